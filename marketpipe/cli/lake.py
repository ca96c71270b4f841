"""`marketpipe lake ...`: the cold lake's tiering and lifecycle commands.

Layout, manifest and guarantees: :mod:`storage.tiering` and :mod:`storage.lifecycle`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from core.errors import RequestError
from marketpipe.cli.context import JsonReport, settings_of

app = typer.Typer(
    help="Cold lake: tiering of old hot data to Parquet, listing, sizes, compaction.", no_args_is_help=True
)

DatasetOption = Annotated[
    list[str] | None,
    typer.Option("--dataset", "-d", help="bars_intraday, bars_daily, features, feature_values or trades (repeatable)"),
]


def _when(value: str | None, option: str) -> datetime | None:
    from pipeline.request import parse_when

    return None if value is None else parse_when(value, option)


def _tier_range(
    older_than: str | None, newer_than: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """The optional tiering bounds, refused when they cannot be what the user meant."""
    before, after = _when(older_than, "--older-than"), _when(newer_than, "--newer-than")
    if before is not None and before > now:
        raise RequestError(
            f"--older-than {older_than!r} is in the future; tiering moves chunks that ended before it, so give "
            f"a past date (now is {now:%Y-%m-%d %H:%M} UTC) or leave it out to use storage.routing.hot_data_days"
        )
    if before is not None and after is not None and after >= before:
        raise RequestError(
            f"--newer-than {newer_than!r} is not before --older-than {older_than!r}: nothing lies between them; "
            "give --newer-than an earlier date than --older-than"
        )
    return before, after


def _echo(payload: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str) if as_json else text)


@app.command("tier")
def tier(
    ctx: typer.Context,
    dataset: DatasetOption = None,
    older_than: Annotated[
        str | None, typer.Option(help="move chunks ending before this date (default: each dataset's hot window)")
    ] = None,
    newer_than: Annotated[str | None, typer.Option(help="only chunks starting at or after this date")] = None,
    as_json: JsonReport = False,
) -> None:
    """Move hot chunks older than storage.routing.hot_data_days to the lake (export, verify,
    record, drop: one transaction per chunk; a rerun finishes an interrupted run)."""
    from db.connect import database_connection
    from storage.lake import Lake
    from storage.tiering import datasets_of, ensure_native_compression, tier_chunks

    settings = settings_of(ctx)
    names = [d.name for d in datasets_of(dataset)]  # refuses unknown names before any work
    before, after = _tier_range(older_than, newer_than, datetime.now(UTC))
    with database_connection(settings, autocommit=True) as conn:
        ensure_native_compression(conn, settings)
        report = tier_chunks(
            conn, Lake.from_settings(settings.lake), settings, dataset=names, older_than=before, newer_than=after
        )
    summary = report.as_dict()
    _echo(
        summary,
        as_json,
        f"tiered {summary['chunks']} chunk(s): {summary['rows']:,} rows in {summary['files']} "
        f"file(s), {summary['bytes_written']:,} B in {summary['seconds']} s",
    )


@app.command("ls")
def ls(
    ctx: typer.Context,
    dataset: DatasetOption = None,
    timeframe: Annotated[str | None, typer.Option(help="only this timeframe, e.g. 1min or 1day")] = None,
    start: Annotated[str | None, typer.Option(help="only files with rows at or after this date")] = None,
    end: Annotated[str | None, typer.Option(help="only files with rows before this date")] = None,
    show_orphans: Annotated[
        bool, typer.Option("--orphans", help="list objects under cold/ that the manifest does not list")
    ] = False,
    as_json: JsonReport = False,
) -> None:
    """List the lake's files (from the manifest ops.lake_files): key, rows, bytes, time range."""
    from core.model import canonical_timeframe
    from db.connect import database_connection
    from storage.lake import Lake
    from storage.lifecycle import orphans
    from storage.tiering import datasets_of, manifest_files

    settings = settings_of(ctx)
    names = [d.name for d in datasets_of(dataset)]
    tf = None if timeframe is None else _timeframe(timeframe, canonical_timeframe)
    with database_connection(settings, autocommit=True) as conn:
        if show_orphans:
            keys = orphans(conn, Lake.from_settings(settings.lake))
            _echo(keys, as_json, "\n".join(keys) or "no orphaned objects")
            return
        files = manifest_files(
            conn, dataset=names, timeframe=tf, start=_when(start, "--start"), end=_when(end, "--end")
        )
    lines = [
        f"{f.key}  {f.row_count:>10,} rows  {f.size_bytes:>12,} B  {f.min_ts:%Y-%m-%d %H:%M}"
        f" .. {f.max_ts:%Y-%m-%d %H:%M}"
        for f in files
    ]
    _echo([asdict(f) for f in files], as_json, "\n".join(lines) or "the lake holds no tiered files")


def _timeframe(value: str, canonical: Any) -> str:
    from core.errors import PermanentSourceError

    try:
        return canonical(value)
    except PermanentSourceError as exc:
        raise RequestError(
            f"--timeframe {value!r} is not a timeframe: {exc}; use e.g. 1min, 5min, 1hour, 1day"
        ) from exc


@app.command("du")
def du(ctx: typer.Context, as_json: JsonReport = False) -> None:
    """Bytes per dataset at each temperature: hot (uncompressed chunks incl. indexes), warm
    (natively compressed chunks, full TimescaleDB edition) and cold (Parquet objects in the manifest)."""
    from db.connect import database_connection
    from storage.lifecycle import usage

    with database_connection(settings_of(ctx), autocommit=True) as conn:
        rows = usage(conn)
    lines = []
    for u in rows:
        unit = "files " if u.tier == "cold" else "chunks"
        counted = "" if u.rows is None else f"{u.rows:,} rows"
        ratio = f"  ({u.uncompressed_bytes / u.bytes:.1f}x smaller)" if u.uncompressed_bytes and u.bytes else ""
        lines.append(
            f"{u.tier:<5} {u.dataset:<15} {u.timeframe or '':<6} {u.files:>7} {unit} {counted:>16} {u.bytes:>15,} B"
            + ratio
        )
    _echo([asdict(u) for u in rows], as_json, "\n".join(lines))


@app.command("compact")
def compact(
    ctx: typer.Context,
    dataset: DatasetOption = None,
    min_files: Annotated[
        int | None,
        typer.Option(
            min=2, help="merge partitions with at least this many files (default storage.data_lake.compact_min_files)"
        ),
    ] = None,
    as_json: JsonReport = False,
) -> None:
    """Merge each partition's small files into one (verified before the old ones go), then delete
    orphaned objects left by interrupted runs."""
    from db.connect import database_connection
    from storage.lake import Lake
    from storage.lifecycle import compact as compact_lake
    from storage.tiering import datasets_of

    settings = settings_of(ctx)
    names = [d.name for d in datasets_of(dataset)]
    with database_connection(settings, autocommit=True) as conn:
        report = compact_lake(conn, Lake.from_settings(settings.lake), settings, dataset=names, min_files=min_files)
    payload = {
        "partitions": [asdict(p) for p in report.partitions],
        "orphans_deleted": report.orphans_deleted,
        "seconds": round(report.seconds, 3),
    }
    text = "\n".join(f"{p.key}  <- {p.files_merged} files, {p.rows:,} rows" for p in report.partitions)
    _echo(
        payload,
        as_json,
        (text or "no partition needed compaction") + f"\n{len(report.orphans_deleted)} orphaned object(s) deleted",
    )


@app.command("prune-raw")
def prune_raw(
    ctx: typer.Context,
    retention_days: Annotated[
        int | None, typer.Option(min=1, help="keep this many days (default storage.data_lake.raw_retention_days)")
    ] = None,
    as_json: JsonReport = False,
) -> None:
    """Delete raw-zone vendor pages whose data is older than the retention (unprocessed pages stay)."""
    from db.connect import database_connection
    from storage.lake import Lake
    from storage.lifecycle import prune_raw as prune

    settings = settings_of(ctx)
    days = retention_days or settings.storage.data_lake.raw_retention_days
    with database_connection(settings, autocommit=True) as conn:
        report = prune(conn, Lake.from_settings(settings.lake), days)
    text = (
        f"raw zone before {report.cutoff}: {report.pages} page row(s) and {report.objects} object(s) deleted, "
        f"{report.kept_unprocessed} unprocessed page(s) kept"
    )
    _echo(asdict(report), as_json, text)
