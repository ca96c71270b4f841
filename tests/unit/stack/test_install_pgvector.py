"""scripts/install-system.sh installs pgvector (news search, migration 0022) the way it installs
TimescaleDB: from Debian's source package when the distribution has no binary package, built without
host-specific CPU flags, cached, and checked on every run (also when TimescaleDB is already in place).
The script itself is run by `make install`; these checks read it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "install-system.sh"


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_pgvector_is_checked_before_the_timescaledb_early_exit() -> None:
    text = SCRIPT.read_text()
    check = text.index("if ! pgvector_installed; then")
    early_exit = text.index("if full_edition_installed && apache_edition_installed; then")
    assert check < early_exit, "a machine with TimescaleDB in place must still get pgvector"


def test_pgvector_is_built_portably_from_the_debian_source_package() -> None:
    text = SCRIPT.read_text()
    assert re.search(r'make -j"\$\(nproc\)" PG_CONFIG="\$PG_CONFIG" OPTFLAGS=""', text), "no -march=native"
    assert "source --download-only pgvector" in text
    assert 'apt-cache show "postgresql-${PG_MAJOR}-pgvector"' in text  # the binary package where there is one


def test_no_mirror_host_is_written_into_the_script() -> None:
    text = SCRIPT.read_text()
    assert not re.search(r"deb\.debian\.org|ftp\.[a-z.]*debian|mirror\.[a-z]", text)
