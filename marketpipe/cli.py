"""The ``marketpipe`` command line.

Global options build the one settings object (see core.settings for the precedence) and set
PREFECT_API_URL for everything the command runs. User mistakes end in one clear line on stderr and
a non-zero exit code, never a traceback; ``--debug`` adds the traceback for bugs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from loguru import logger

from marketpipe.cli_features import bench_features
from marketpipe.cli_lake import lake_app
from marketpipe.cli_scan import bench_storage, scan_app
from core.errors import MarketpipeError, PortInUseError
from core.logs import configure_logging
from stack.daemon import port_free
from core.settings import Settings, load_settings, parse_overrides

app = typer.Typer(
    name="marketpipe",
    help="marketpipe: the market-data pipeline (embedded TimescaleDB + S3 lake + Prefect).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Hot-store schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
dlq_app = typer.Typer(help="Dead-letter queue: vendor pages and records that could not be processed.",
                      no_args_is_help=True)  # fmt: skip
app.add_typer(dlq_app, name="dlq")
bench_app = typer.Typer(help="Benchmarks against their references, measured in the same run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
features_app = typer.Typer(help="Feature store: computed features and their Parquet export.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(lake_app, name="lake")
app.add_typer(scan_app, name="scan")


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj["settings"]


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file [default: config/data_pipeline_config.yaml]"),
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="dotenv file with secrets [default: .env]")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="override any setting, e.g. collection.batch_size=100"),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="where the embedded stack keeps its data")
    ] = None,
    db_port: Annotated[int | None, typer.Option("--db-port", help="PostgreSQL port")] = None,
    s3_port: Annotated[int | None, typer.Option("--s3-port", help="S3 lake port")] = None,
    prefect_port: Annotated[int | None, typer.Option("--prefect-port", help="Prefect server/UI port")] = None,
    sandbox_port: Annotated[int | None, typer.Option("--sandbox-port", help="market sandbox port")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="debug logging for marketpipe, tracebacks on errors")] = False,
) -> None:
    overrides = parse_overrides(set_ or [])
    named = {
        ("state_dir",): state_dir,
        ("database", "port"): db_port,
        ("lake", "port"): s3_port,
        ("prefect", "port"): prefect_port,
        ("sandbox", "port"): sandbox_port,
        ("debug",): True if debug else None,
    }
    for path, value in named.items():
        if value is None:
            continue
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = str(value) if isinstance(value, Path) else value
    settings = load_settings(config_path=config, env_file=env_file, overrides=overrides)
    configure_logging(settings.log_level, settings.debug, settings.secret_values())
    # Flows run in this process build their settings again from the same sources.
    if config is not None:
        os.environ["MARKETPIPE_CONFIG"] = str(config.absolute())
    if env_file is not None:
        os.environ["MARKETPIPE_ENV_FILE"] = str(env_file.absolute())
    os.environ["PREFECT_API_URL"] = settings.prefect.resolved_api_url
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    ctx.obj = {"settings": settings, "overrides": overrides}


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the embedded stack (PostgreSQL+TimescaleDB, S3 lake, Prefect server, market sandbox)."""
    from stack.supervisor import Stack

    settings = _settings(ctx)
    stack = Stack(settings)
    report = stack.up()
    status = stack.status()
    for name in report.started:
        typer.echo(f"started  {name:<9} {status.components[name].address}")
    for name in report.already_running:
        typer.echo(f"running  {name:<9} {status.components[name].address} (already)")
    if report.migrations_applied:
        typer.echo(f"migrations applied: {', '.join(report.migrations_applied)}")
    if report.routines_applied:
        typer.echo(f"routines applied: {', '.join(report.routines_applied)}")
    ts = status.timescaledb
    if ts:
        typer.echo(f"TimescaleDB {ts.version} ({ts.edition} edition)")
    typer.echo(f"Prefect UI: {settings.prefect.ui_url}")
    typer.echo(f"stack healthy in {report.seconds:.1f} s; state in {settings.state_dir}")


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every component the stack started; the data stays in the state directory."""
    from stack.supervisor import Stack

    stopped = Stack(_settings(ctx)).down()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Health of each component; exits 1 when any component is unhealthy."""
    from stack.supervisor import Stack

    result = Stack(_settings(ctx)).status()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for c in result.components.values():
            mark = "healthy  " if c.healthy else "UNHEALTHY"
            pid = f"pid {c.pid}" if c.pid else "-"
            typer.echo(f"{c.name:<9} {mark} {c.address:<28} {pid:<10} {c.detail}")
        ts = result.timescaledb
        if ts:
            typer.echo(f"TimescaleDB {ts.version}, edition: {ts.edition}")
    if not result.healthy:
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Apply pending migrations from db/migrations (refuses edited applied ones), then the new or
    changed routines from db/routines."""
    from db.connect import database_connection
    from db.migrate import migrate

    with database_connection(_settings(ctx), autocommit=True) as conn:
        applied = migrate(conn)
    if applied.migrations:
        typer.echo(f"applied: {', '.join(m.filename for m in applied.migrations)}")
    if applied.routines:
        typer.echo(f"routines applied: {', '.join(r.filename for r in applied.routines)}")
    if not (applied.migrations or applied.routines):
        typer.echo("schema is up to date")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Applied and pending migrations, then routines: applied, or pending (new or changed since applied)."""
    from db.connect import database_connection
    from db.migrate import applied_migrations, applied_routines, changed, discover, discover_routines, pending

    with database_connection(_settings(ctx), autocommit=True) as conn:
        done = applied_migrations(conn)
        routines_done = applied_routines(conn)
    for m in done:
        typer.echo(f"applied  {m.version}_{m.name}.sql")
    for m in pending(discover(), done):
        typer.echo(f"pending  {m.filename}")
    routines = discover_routines()
    redo = {r.filename for r in changed(routines, routines_done)}
    for r in routines:
        typer.echo(f"{'pending' if r.filename in redo else 'applied'}  routines/{r.filename}")


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset (bars, splits, ...)")] = None,
    include_resolved: Annotated[bool, typer.Option("--all", help="include replayed letters")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Open dead letters, most recent failure first."""
    import asyncio

    from db.connect import async_database_connection
    from sources.dead_letters import list_dead_letters

    async def fetch() -> list:
        async with await async_database_connection(_settings(ctx), autocommit=True) as conn:
            return await list_dead_letters(
                conn, source=source, dataset=dataset, include_resolved=include_resolved, limit=limit
            )

    letters = asyncio.run(fetch())
    if as_json:
        typer.echo(json.dumps([
            {"id": d.id, "source": d.source, "dataset": d.dataset, "request": d.request, "error": d.error,
             "error_type": d.error_type, "attempts": d.attempts, "first_seen": d.first_seen.isoformat(),
             "last_seen": d.last_seen.isoformat(), "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None}
            for d in letters], indent=2))  # fmt: skip
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for d in letters:
        state = "replayed" if d.resolved_at else f"{d.attempts} attempt(s)"
        url = d.request.get("url", "")
        typer.echo(f"#{d.id:<5} {d.source:<8} {d.dataset:<12} {state:<13} {d.last_seen:%Y-%m-%d %H:%M} {url}")
        typer.echo(f"       {d.error_type}: {d.error[:160]}")


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many letters")] = None,
) -> None:
    """Fetch every open dead letter again into the raw zone; idempotent, safe to repeat."""
    import asyncio
    import uuid

    from db.connect import async_database_connection
    from tasks.collection import replay_dead_letter
    from sources.factory import build_source
    from sources.dead_letters import replay_dead_letters
    from storage.lake import Lake

    settings = _settings(ctx)
    lake = Lake.from_settings(settings.lake)
    run_id = f"dlq-replay-{uuid.uuid4()}"

    async def replay() -> dict[str, int]:
        sources: dict = {}
        async with await async_database_connection(settings, autocommit=True) as conn:

            async def fetcher(letter) -> None:
                if letter.source not in sources:
                    sources[letter.source] = build_source(letter.source, settings)
                await replay_dead_letter(sources[letter.source], letter, lake, conn, run_id)

            try:
                summary = await replay_dead_letters(conn, fetcher, source=source, dataset=dataset, limit=limit)
            finally:
                for built in sources.values():
                    await built.aclose()
        return summary.as_dict()

    summary = asyncio.run(replay())
    typer.echo(", ".join(f"{k}: {v}" for k, v in summary.items()))


@app.command()
def run(
    ctx: typer.Context,
    stages: Annotated[
        str | None,
        typer.Option(help="comma-separated subset of ingestion,processing,historical,features [default: all]"),
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="override pipeline.symbols, e.g. AAPL,MSFT")] = None,
    mode: Annotated[str, typer.Option(help="batch (real_time and hybrid arrive with streaming)")] = "batch",
) -> None:
    """The main job: run_pipeline over the configured universe (see `pipeline:` in the config)."""
    import asyncio

    from flows.pipeline import pipeline_flow
    from pipeline.request import parse_symbols
    from tasks.pipeline import parse_stages

    settings = _settings(ctx)
    chosen = parse_stages([s.strip() for s in stages.split(",")] if stages else None, mode)
    universe = list(parse_symbols(symbols)) if symbols else None
    jobs = ", ".join(f"{j.timeframe} x {j.lookback_days} days" for j in settings.pipeline.bars)
    typer.echo(f"pipeline ({'+'.join(chosen)}): {len(universe or settings.pipeline.symbols)} symbols from "
               f"{settings.pipeline.source}; bars {jobs}"
               f"{'; corporate actions' if settings.pipeline.corporate_actions else ''}")  # fmt: skip
    result = asyncio.run(pipeline_flow(stages=chosen, mode=mode, symbols=universe, overrides=ctx.obj["overrides"]))
    typer.echo(_pipeline_summary(result, settings))


def _pipeline_summary(result: dict, settings: Settings) -> str:
    lines = []
    fetched = result["records_ingested"]
    up_to_date = sorted({s for run in result["ingestion"] for s in run["up_to_date"]})
    if "ingestion" in result["stages"]:
        if fetched == 0:
            lines.append("ingestion: nothing new to fetch; every series is up to date")
        else:
            lines.append(f"ingestion: {fetched:,} records fetched"
                         + (f" ({len(up_to_date)} series already up to date)" if up_to_date else ""))  # fmt: skip
    failed = sorted({s for run in result["ingestion"] for s in run["failed"]})
    if failed:
        lines.append(f"  failed (dead-lettered, retried next run): {', '.join(failed)}")
    if "processing" in result["stages"]:
        rejected = result["rejected"]
        lines.append(f"processing: {result['records_stored']:,} bars and actions stored, {rejected:,} rejected")
        quality = result["quality_score"]
        if quality is not None:
            reasons = [r for run in result["processing"] for r in run.get("quality_reasons", [])]
            minimum = settings.quality.min_quality_score
            flag = "" if quality >= minimum else f" (below {minimum})"
            lines.append(f"quality score: {quality:.3f}{flag}" + (f": {reasons[0]}" if flag and reasons else ""))
    if "historical" in result["stages"]:
        repaired = sum(run.get("symbol_sessions", 0) for run in result["historical"])
        lines.append(f"historical: {repaired} missing symbol-sessions refetched" if repaired
                     else "historical: no gaps against the NYSE calendar")  # fmt: skip
    if "features" in result["stages"]:
        versions = sorted({run["feature_set"] for run in result["features"]})
        lines.append(f"features: {result['feature_rows_stored']:,} rows new or changed (feature set "
                     f"{', '.join(versions) or '-'})")  # fmt: skip
    seconds = result["seconds"]
    rate = fetched / seconds if seconds > 0 else 0.0
    lines.append(f"done in {seconds:.1f} s ({rate:,.0f} records/s)")
    lines.append(f"Prefect UI: {settings.prefect.ui_url}/runs (flow runs 'pipeline-batch', 'ingest-*', 'process-*')")
    return "\n".join(lines)


@app.command()
def ingest(
    ctx: typer.Context,
    symbols: Annotated[str, typer.Option(help="comma-separated tickers, e.g. AAPL,MSFT,BRK.B")],
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="last day, YYYY-MM-DD (inclusive)")],
    timeframe: Annotated[str, typer.Option(help="1min, 5min, 15min, 1hour or 1day")] = "1day",
    source: Annotated[str, typer.Option(help="polygon, alpaca, yahoo or a plugin")] = "polygon",
    data_type: Annotated[str, typer.Option(help="market_data or corporate_actions")] = "market_data",
    full: Annotated[bool, typer.Option("--full", help="refetch the whole range (ignore watermarks)")] = False,
) -> None:
    """Fetch bars (or corporate actions) for symbols and a date range into the hot store."""
    import asyncio

    from flows.ingestion import ingest_flow
    from pipeline.request import parse_ingest_request
    from sources.registry import discover_sources

    settings = _settings(ctx)
    end_of_day = end if "T" in end else f"{end}T23:59:59"
    known = discover_sources(settings.sources).names()
    parse_ingest_request(data_type=data_type, symbols=symbols, start_date=start, end_date=end_of_day,
                         timeframe=timeframe, source=source, known_sources=known)  # fmt: skip
    summary = asyncio.run(ingest_flow(symbols=symbols.split(","), start_date=start, end_date=end_of_day,
                                      data_type=data_type, timeframe=timeframe, source=source,
                                      incremental=not full, overrides=ctx.obj["overrides"]))  # fmt: skip
    fetched = sum(c["records"] for c in summary["collected"])
    stored = sum(p["inserted"] + p["updated"] for p in summary["processed"])
    rejected = sum(p["rejected"] for p in summary["processed"])
    if not summary["collected"]:
        typer.echo(f"nothing new: {', '.join(summary['up_to_date'])} already up to date (use --full to refetch)")
    else:
        typer.echo(f"fetched {fetched:,} records, stored {stored:,} ({rejected:,} rejected) "
                   f"in {summary['seconds']:.1f} s")  # fmt: skip
    if summary["quality_score"] is not None:
        typer.echo(f"quality score {summary['quality_score']:.3f}")
    if summary["failed"]:
        typer.echo(f"failed (see `marketpipe dlq list`): {', '.join(summary['failed'])}", err=True)
        raise typer.Exit(1)


@app.command()
def backfill(
    ctx: typer.Context,
    symbols: Annotated[str | None, typer.Option(help="tickers [default: pipeline.symbols]")] = None,
    start: Annotated[str | None, typer.Option(help="first day [default: each series' lookback]")] = None,
    end: Annotated[str | None, typer.Option(help="last day [default: today]")] = None,
    timeframe: Annotated[str | None, typer.Option(help="one timeframe [default: every configured series]")] = None,
    gaps: Annotated[bool, typer.Option("--gaps", help="only refetch sessions missing against the calendar")] = False,
) -> None:
    """Refetch a range into the hot store; with --gaps only the sessions missing against the NYSE
    calendar, in resumable chunks."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from flows.historical import historical_flow
    from flows.ingestion import ingest_flow
    from pipeline.request import parse_symbols, parse_timeframe_choice, parse_when

    settings = _settings(ctx)
    names = list(parse_symbols(symbols)) if symbols else list(settings.pipeline.symbols)
    today = datetime.now(UTC).date()
    series = ([(parse_timeframe_choice(timeframe), None)] if timeframe
              else [(job.timeframe, job.lookback_days) for job in settings.pipeline.bars])  # fmt: skip
    for tf, lookback in series:
        first = parse_when(start, "start").date() if start else today - timedelta(days=lookback or 365)
        last = parse_when(end, "end").date() if end else today
        common = {"symbols": names, "start_date": first.isoformat(), "timeframe": tf,
                  "source": settings.pipeline.source, "overrides": ctx.obj["overrides"]}  # fmt: skip
        if not gaps:
            summary = asyncio.run(ingest_flow(end_date=f"{last.isoformat()}T23:59:59", incremental=False, **common))
            stored = sum(p["inserted"] + p["updated"] for p in summary["processed"])
            typer.echo(f"{tf}: {sum(c['records'] for c in summary['collected']):,} records refetched "
                       f"from {first} to {last}, {stored:,} new or changed")  # fmt: skip
            continue
        result = asyncio.run(historical_flow(end_date=last.isoformat(), **common))
        if result["gaps"] == 0:
            typer.echo(f"{tf}: no gaps between {first} and {last}")
        else:
            typer.echo(f"{tf}: {result['symbol_sessions']} missing symbol-sessions refetched in "
                       f"{len(result['chunks'])} chunk(s); "
                       f"{result['remaining_symbol_sessions']} still missing")  # fmt: skip


@bench_app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of 1-minute bars")] = 100,
    sessions: Annotated[int, typer.Option(min=1, help="sessions per symbol")] = 20,
    naive_symbols: Annotated[int, typer.Option(min=1, help="symbols for the naive SDK + to_sql baseline")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """End-to-end ingest vs a naive baseline, the hot writer vs psql \\copy, Prefect's overhead."""
    from bench import ingest as bench

    report = bench.run(_settings(ctx), symbols=symbols, sessions=sessions, overrides=ctx.obj["overrides"],
                       naive_symbols=naive_symbols)  # fmt: skip
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))


bench_app.command("storage")(bench_storage)
bench_app.command("features")(bench_features)


@features_app.command("export")
def features_export(
    ctx: typer.Context,
    symbols: Annotated[str, typer.Option(help="comma-separated tickers")],
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="end (exclusive), YYYY-MM-DD")],
    timeframe: Annotated[str, typer.Option(help="1min, 5min, 15min, 1hour or 1day")] = "1day",
    names: Annotated[str | None, typer.Option(help="comma-separated feature names [default: all]")] = None,
    prefix: Annotated[str, typer.Option(help="lake key prefix")] = "features",
    feature_set: Annotated[str | None, typer.Option(help="feature-set version [default: the latest]")] = None,
) -> None:
    """Features of SYMBOLS in [START, END) to the lake as Parquet (one object per symbol), for ML."""
    from db.connect import database_connection
    from pipeline.request import parse_symbols, parse_timeframe_choice
    from storage.feature_tables import export_features
    from storage.lake import Lake

    settings = _settings(ctx)
    with database_connection(settings) as conn:
        keys = export_features(conn, Lake.from_settings(settings.lake), list(parse_symbols(symbols)), start, end,
                               parse_timeframe_choice(timeframe), names.split(",") if names else None, prefix,
                               settings.storage.data_lake.compression, feature_set=feature_set)  # fmt: skip
    typer.echo("\n".join(f"s3://{settings.lake.bucket}/{key}" for key in keys) or "no features stored for that range")


@app.command()
def metrics(
    ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, help="how many recent runs")] = 20
) -> None:
    """Recent pipeline runs and the last 24 hours' totals (records, quality, throughput, storage)."""
    from datetime import UTC, datetime, timedelta

    from db.connect import database_connection
    from pipeline.metrics import aggregate_metrics, format_metrics_table, read_recent_runs
    from storage.lake import Lake

    settings = _settings(ctx)
    since = datetime.now(UTC) - timedelta(hours=24)
    with database_connection(settings) as conn:
        runs = read_recent_runs(conn, limit)
        totals = aggregate_metrics(conn, since, lake=Lake.from_settings(settings.lake))
    typer.echo(format_metrics_table(runs))
    usage = totals.storage_utilization
    typer.echo(f"last 24 h: {totals.runs} runs, {totals.ingestion_records:,} records ingested, "
               f"quality {totals.quality_score:.2%}, {totals.throughput_records_per_second:,.0f} rec/s, "
               f"hot store {usage['hot_store_bytes']:,} B, lake {usage['lake_bytes']:,} B")  # fmt: skip


@app.command()
def health(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False
) -> None:
    """Components, circuit breakers, data freshness, dead-letter growth; exits 1 when unhealthy."""
    from pipeline.health import check_health
    from stack.supervisor import Stack

    settings = _settings(ctx)
    report = check_health(settings, status=Stack(settings).status())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        typer.echo("healthy" if report["healthy"] else "UNHEALTHY")
        for issue in report["issues"]:
            typer.echo(f"- {issue}")
    if not report["healthy"]:
        raise typer.Exit(1)


@app.command()
def sandbox(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="bind address [default: sandbox.host]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: sandbox.port]")] = None,
    seed: Annotated[int | None, typer.Option(help="market seed [default: sandbox.seed]")] = None,
) -> None:
    """Serve the market sandbox in the foreground (Polygon, Alpaca, Yahoo, Reddit wire formats)."""
    from sandbox.server import serve

    settings = _settings(ctx).sandbox
    host, port, seed = host or settings.host, port or settings.port, seed if seed is not None else settings.seed
    if not port_free(host, port):
        raise PortInUseError("sandbox", host, port, "sandbox.port or --port")
    typer.echo(f"market sandbox (seed {seed}) on http://{host}:{port}; health: /_sandbox/health; Ctrl+C stops")
    serve(host, port, seed)


@app.command()
def worker(
    ctx: typer.Context,
    pool: Annotated[str, typer.Option(help="Prefect work pool")] = "marketpipe",
    queue: Annotated[list[str] | None, typer.Option(help="work queue(s) to poll; default: all")] = None,
    name: Annotated[str | None, typer.Option(help="worker name [default: Prefect's]")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many flow runs at once [default: any]")] = None,
) -> None:
    """Run a Prefect process worker for the pool against PREFECT_API_URL (any host)."""
    argv = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    for q in queue or []:
        argv += ["--work-queue", q]
    if name:
        argv += ["--name", name]
    if limit:
        argv += ["--limit", str(limit)]
    typer.echo(f"worker for pool {pool!r} polling {os.environ['PREFECT_API_URL']}")
    # The worker is Prefect's own process: it logs with Prefect's configuration, not ours (ours
    # routes to loguru, which only an entry point of ours sets up). Flow runs it starts are
    # marketpipe entry points and configure themselves.
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_SETTINGS_PATH"}
    env.setdefault("MARKETPIPE_HOME", str(Path.cwd()))
    # Become the worker (exec, not a child): a service manager's SIGTERM then reaches Prefect's
    # graceful shutdown directly, and no wrapper can exit first and leave a worker polling.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


@app.command()
def deploy(
    ctx: typer.Context,
    alert_webhook: Annotated[
        str | None,
        typer.Option(help="URL the alert automations notify (JSON {subject, text}); kept until changed"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="run prefect deploy even when nothing changed")] = False,
) -> None:
    """Create the `marketpipe` work pool and its queues, register every deployment of prefect.yaml
    (skipped when the server already has them as they are) and the alert automations; all
    idempotent, against the configured Prefect server."""
    from deployments.alerts import ensure_alert_automations
    from deployments.deploy import QUEUES, deploy_changed, ensure_work_pool

    settings = _settings(ctx)
    created = ensure_work_pool("marketpipe", QUEUES)
    typer.echo(f"work pool 'marketpipe' (queues {', '.join(QUEUES)}): "
               + (f"created {', '.join(created)}" if created else "already there"))  # fmt: skip
    names, deployed = deploy_changed(Path(os.environ.get("MARKETPIPE_HOME") or Path.cwd()), force=force)
    for name in names:
        typer.echo(f"deployment  {name}")
    if not deployed:
        typer.echo("deployments already up to date with prefect.yaml (--force deploys again)")
    for name, outcome in ensure_alert_automations(alert_webhook).items():
        typer.echo(f"automation  {name} ({outcome})")
    typer.echo(f"Prefect UI: {settings.prefect.ui_url}/deployments")


def main() -> None:
    """Console-script entry point: one error line for a user mistake, tracebacks only with --debug."""
    debug = "--debug" in sys.argv
    try:
        app()
    except MarketpipeError as exc:
        if debug:
            logger.exception("command failed")
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
