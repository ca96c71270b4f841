"""The embedded cluster's Unix socket trusts whoever reaches it, so only the stack's OS user may:
another local user is refused at the socket's directory, the stack's own clients still get in."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess

from core.settings import Settings
from stack.postgres import EmbeddedPostgres

OTHER_USER = "nobody"


def psql_as(user: str, server: EmbeddedPostgres, settings: Settings) -> subprocess.CompletedProcess:
    """`SELECT 1` through the socket as the cluster's superuser, run as the OS user ``user``."""
    return subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            str(server.bindir / "psql"),
            "-h",
            str(server.socket_dir),
            "-p",
            str(settings.database.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            "SELECT 1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


def test_the_socket_directory_is_private_to_the_clusters_os_user(stack: Settings) -> None:
    server = EmbeddedPostgres(stack.database, stack.state_dir)
    mode = server.socket_dir.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o700, oct(mode.st_mode)
    with server.superuser_connection("postgres") as conn:  # the stack's own way in
        assert conn.execute("SHOW unix_socket_permissions").fetchone()[0] == "0700"
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    assert os.geteuid() == 0, "the tests run as root (the stack's supervisor); run them as root"
    assert mode.st_uid == pwd.getpwnam(server.os_user).pw_uid
    assert psql_as(server.os_user, server, stack).stdout.strip() == "1"  # the cluster's own user gets in

    refused = psql_as(OTHER_USER, server, stack)

    assert refused.returncode != 0, refused.stdout
    assert "Permission denied" in refused.stderr, refused.stderr
