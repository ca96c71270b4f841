"""Migration planning is pure: misnamed, duplicated, edited or missing files are refused; routines are
re-applied exactly when their checksum changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import MigrationError
from db.migrate import (
    MIGRATIONS_DIR,
    ROUTINES_DIR,
    AppliedMigration,
    changed,
    discover,
    discover_routines,
    pending,
)


def make_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_project_migrations_are_ordered_and_well_named() -> None:
    migrations = discover(MIGRATIONS_DIR)
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert versions[:2] == ["0001", "0002"]


def test_discover_orders_by_version(tmp_path: Path) -> None:
    directory = make_dir(tmp_path, {"0002_b.sql": "SELECT 2;", "0001_a.sql": "SELECT 1;"})
    assert [m.filename for m in discover(directory)] == ["0001_a.sql", "0002_b.sql"]


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_misnamed_file_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MigrationError, match="misnamed"):
        discover(make_dir(tmp_path, {name: "SELECT 1;"}))


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="share version 0001"):
        discover(make_dir(tmp_path, {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}))


def test_pending_skips_applied(tmp_path: Path) -> None:
    migrations = discover(make_dir(tmp_path, {"0001_a.sql": "SELECT 1;", "0002_b.sql": "SELECT 2;"}))
    applied = [AppliedMigration("0001", "a", migrations[0].checksum)]
    assert [m.version for m in pending(migrations, applied)] == ["0002"]


def test_edited_applied_migration_is_refused(tmp_path: Path) -> None:
    migrations = discover(make_dir(tmp_path, {"0001_a.sql": "SELECT 1; -- edited"}))
    applied = [AppliedMigration("0001", "a", "0" * 64)]
    with pytest.raises(MigrationError, match=r"0001_a\.sql was edited after it was applied"):
        pending(migrations, applied)


def test_applied_migration_with_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="file is missing"):
        pending([], [AppliedMigration("0001", "a", "0" * 64)])


# -- routines ---------------------------------------------------------------------------------
def test_project_routines_are_ordered_and_well_named() -> None:
    names = [r.filename for r in discover_routines(ROUTINES_DIR)]
    assert names == sorted(names)
    assert "50_scanners.sql" in names


def test_routines_are_ordered_by_their_number(tmp_path: Path) -> None:
    directory = make_dir(tmp_path, {"20_b.sql": "SELECT 2;", "10_a.sql": "SELECT 1;", "15_c.sql": "SELECT 3;"})
    assert [r.filename for r in discover_routines(directory)] == ["10_a.sql", "15_c.sql", "20_b.sql"]


@pytest.mark.parametrize("name", ["scanners.sql", "1_short.sql", "0001_versioned.sql", "10-dash.sql", "10_Upper.sql"])
def test_misnamed_routine_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MigrationError, match="misnamed"):
        discover_routines(make_dir(tmp_path, {name: "SELECT 1;"}))


def test_routines_sharing_a_number_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="share order 10"):
        discover_routines(make_dir(tmp_path, {"10_a.sql": "SELECT 1;", "10_b.sql": "SELECT 2;"}))


def test_new_and_changed_routines_are_due_in_order_unchanged_ones_are_not(tmp_path: Path) -> None:
    files = {"10_same.sql": "SELECT 1;", "20_edited.sql": "SELECT 2; -- v2", "30_new.sql": "SELECT 3;"}
    routines = discover_routines(make_dir(tmp_path, files))
    applied = {"10_same.sql": routines[0].checksum, "20_edited.sql": "0" * 64, "05_gone.sql": "1" * 64}

    assert [r.filename for r in changed(routines, applied)] == ["20_edited.sql", "30_new.sql"]


def test_nothing_is_due_when_every_checksum_matches(tmp_path: Path) -> None:
    routines = discover_routines(make_dir(tmp_path, {"10_a.sql": "SELECT 1;", "20_b.sql": "SELECT 2;"}))
    assert changed(routines, {r.filename: r.checksum for r in routines}) == []
