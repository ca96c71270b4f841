"""`marketpipe run | ingest | backfill | metrics | health`: the pipeline's jobs and how they went.

Each job is a Prefect flow run in this process (see :mod:`flows`); the commands parse the request,
run the flow and print its summary.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from core.settings import Settings
from marketpipe.cli.context import JsonOutput, overrides_of, settings_of

app = typer.Typer()


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

    from flows.pipeline_flow import pipeline_flow
    from pipeline.request import parse_symbols
    from tasks.pipeline import parse_stages

    settings = settings_of(ctx)
    chosen = parse_stages([s.strip() for s in stages.split(",")] if stages else None, mode)
    universe = list(parse_symbols(symbols)) if symbols else None
    jobs = ", ".join(f"{j.timeframe} x {j.lookback_days} days" for j in settings.pipeline.bars)
    typer.echo(
        f"pipeline ({'+'.join(chosen)}): {len(universe or settings.pipeline.symbols)} symbols from "
        f"{settings.pipeline.source}; bars {jobs}"
        f"{'; corporate actions' if settings.pipeline.corporate_actions else ''}"
    )
    result = asyncio.run(pipeline_flow(stages=chosen, mode=mode, symbols=universe, overrides=overrides_of(ctx)))
    typer.echo(_pipeline_summary(result, settings))


def _pipeline_summary(result: dict, settings: Settings) -> str:
    lines = []
    fetched = result["records_ingested"]
    up_to_date = sorted({s for run in result["ingestion"] for s in run["up_to_date"]})
    if "ingestion" in result["stages"]:
        if fetched == 0:
            lines.append("ingestion: nothing new to fetch; every series is up to date")
        else:
            lines.append(
                f"ingestion: {fetched:,} records fetched"
                + (f" ({len(up_to_date)} series already up to date)" if up_to_date else "")
            )
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
        lines.append(
            f"historical: {repaired} missing symbol-sessions refetched"
            if repaired
            else "historical: no gaps against the NYSE calendar"
        )
    if "features" in result["stages"]:
        versions = sorted({run["feature_set"] for run in result["features"]})
        lines.append(
            f"features: {result['feature_rows_stored']:,} rows new or changed (feature set "
            f"{', '.join(versions) or '-'})"
        )
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
    source: Annotated[str, typer.Option(help="polygon, alpaca, yahoo, reddit (social) or a plugin")] = "polygon",
    data_type: Annotated[
        str,
        typer.Option(
            help="market_data, corporate_actions, fundamentals, earnings, options, news (polygon, alpaca) "
            "or social (reddit)"
        ),
    ] = "market_data",
    full: Annotated[bool, typer.Option("--full", help="refetch the whole range (ignore watermarks)")] = False,
) -> None:
    """Fetch bars (or corporate actions, filings, the earnings calendar, option chains, news, posts) for
    symbols and a date range into the hot store."""
    import asyncio

    from flows.ingestion import ingest_flow
    from pipeline.request import parse_ingest_request
    from sources.factory import market_data_sources

    settings = settings_of(ctx)
    end_of_day = end if "T" in end else f"{end}T23:59:59"
    known = market_data_sources(settings)
    parse_ingest_request(
        data_type=data_type,
        symbols=symbols,
        start_date=start,
        end_date=end_of_day,
        timeframe=timeframe,
        source=source,
        known_sources=known,
    )
    summary = asyncio.run(
        ingest_flow(
            symbols=symbols.split(","),
            start_date=start,
            end_date=end_of_day,
            data_type=data_type,
            timeframe=timeframe,
            source=source,
            incremental=not full,
            overrides=overrides_of(ctx),
        )
    )
    fetched = sum(c["records"] for c in summary["collected"])
    stored = sum(p["inserted"] + p["updated"] for p in summary["processed"])
    rejected = sum(p["rejected"] for p in summary["processed"])
    kept_apart = sum(p.get("kept_apart", 0) for p in summary["processed"])
    if not summary["collected"]:
        typer.echo(f"nothing new: {', '.join(summary['up_to_date'])} already up to date (use --full to refetch)")
    else:
        typer.echo(
            f"fetched {fetched:,} records, stored {stored:,} ({rejected:,} rejected) in {summary['seconds']:.1f} s"
        )
    if kept_apart:
        typer.echo(
            f"kept apart {kept_apart:,} bars of {source} in market.vendor_bars: a vendor ranked before it in "
            "storage.source_precedence has them served (see `marketpipe vendors`)"
        )
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

    settings = settings_of(ctx)
    names = list(parse_symbols(symbols)) if symbols else list(settings.pipeline.symbols)
    today = datetime.now(UTC).date()
    series = (
        [(parse_timeframe_choice(timeframe), None)]
        if timeframe
        else [(job.timeframe, job.lookback_days) for job in settings.pipeline.bars]
    )
    for tf, lookback in series:
        first = parse_when(start, "start").date() if start else today - timedelta(days=lookback or 365)
        last = parse_when(end, "end").date() if end else today
        common = {
            "symbols": names,
            "start_date": first.isoformat(),
            "timeframe": tf,
            "source": settings.pipeline.source,
            "overrides": overrides_of(ctx),
        }
        if not gaps:
            summary = asyncio.run(ingest_flow(end_date=f"{last.isoformat()}T23:59:59", incremental=False, **common))
            stored = sum(p["inserted"] + p["updated"] for p in summary["processed"])
            typer.echo(
                f"{tf}: {sum(c['records'] for c in summary['collected']):,} records refetched "
                f"from {first} to {last}, {stored:,} new or changed"
            )
            continue
        result = asyncio.run(historical_flow(end_date=last.isoformat(), **common))
        if result["gaps"] == 0:
            typer.echo(f"{tf}: no gaps between {first} and {last}")
        else:
            typer.echo(
                f"{tf}: {result['symbol_sessions']} missing symbol-sessions refetched in "
                f"{len(result['chunks'])} chunk(s); "
                f"{result['remaining_symbol_sessions']} still missing"
            )


@app.command()
def metrics(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, help="how many recent runs")] = 20) -> None:
    """Recent pipeline runs and the last 24 hours' totals (records, quality, throughput, storage)."""
    from datetime import UTC, datetime, timedelta

    from db.connect import database_connection
    from pipeline.metrics import aggregate_metrics, format_metrics_table, read_recent_runs
    from storage.lake import Lake

    settings = settings_of(ctx)
    since = datetime.now(UTC) - timedelta(hours=24)
    with database_connection(settings) as conn:
        runs = read_recent_runs(conn, limit)
        totals = aggregate_metrics(conn, since, lake=Lake.from_settings(settings.lake))
    typer.echo(format_metrics_table(runs))
    usage = totals.storage_utilization
    typer.echo(
        f"last 24 h: {totals.runs} runs, {totals.ingestion_records:,} records ingested, "
        f"quality {totals.quality_score:.2%}, {totals.throughput_records_per_second:,.0f} rec/s, "
        f"hot store {usage['hot_store_bytes']:,} B, lake {usage['lake_bytes']:,} B"
    )


@app.command()
def health(ctx: typer.Context, as_json: JsonOutput = False) -> None:
    """Components, TimescaleDB's background jobs, each source's circuit breaker (as any process
    last published it) and dead letters, each dataset's freshness, the streams: what was checked
    and why it is unhealthy; exits 1 when unhealthy (warnings alone do not)."""
    from pipeline.health import check_health, format_health
    from stack.supervisor import Stack

    settings = settings_of(ctx)
    report = check_health(settings, status=Stack(settings).status())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        for line in format_health(report):
            typer.echo(line)
    if not report["healthy"]:
        raise typer.Exit(1)


@app.command()
def vendors(
    ctx: typer.Context,
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="last day, YYYY-MM-DD (inclusive)")],
    symbols: Annotated[str | None, typer.Option(help="tickers, e.g. AAPL,MSFT [default: every symbol]")] = None,
    timeframe: Annotated[str, typer.Option(help="1min, 5min, 15min, 1hour or 1day")] = "1day",
    tolerance: Annotated[
        float | None,
        typer.Option(help="relative price difference that counts [default: quality.vendor_disagreement_tolerance]"),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Where vendors disagree: bars that two vendors both sent with prices further apart than the
    tolerance (one of them is wrong). The hot store serves the best vendor's bar by
    storage.source_precedence and keeps the others' (market.vendor_bars)."""
    from datetime import timedelta

    import pandas as pd

    from core.model import EXCHANGE_TZ
    from db.connect import database_connection
    from pipeline.request import parse_symbols, parse_timeframe_choice, parse_when
    from storage.vendors import read_vendor_disagreements

    settings = settings_of(ctx)
    names = list(parse_symbols(symbols)) if symbols else None
    tf = parse_timeframe_choice(timeframe)
    first, last = parse_when(start, "start").date(), parse_when(end, "end").date()
    limit = settings.quality.vendor_disagreement_tolerance if tolerance is None else tolerance
    if not limit > 0:
        raise typer.BadParameter(f"--tolerance {tolerance} must be a positive fraction, e.g. 0.005 for 0.5 %")
    with database_connection(settings, autocommit=True) as conn:
        report = read_vendor_disagreements(conn, names, first, last + timedelta(days=1), tf, tolerance=limit)
    if as_json:
        typer.echo(report.to_json(orient="records", date_format="iso"))
        return
    if report.empty:
        typer.echo(f"no {tf} bar from {first} to {last} on which two vendors differ by more than {limit:.2%}")
        return
    days = report.groupby(["symbol", "session_date"]).ngroups
    typer.echo(f"{len(report)} disagreement(s) beyond {limit:.2%} on {days} symbol-day(s), {tf} bars:")
    for row in report.itertuples(index=False):
        local = pd.Timestamp(row.ts).tz_convert(EXCHANGE_TZ)
        when = str(row.session_date) if tf == "1day" else f"{local:%Y-%m-%d %H:%M} ET"
        typer.echo(
            f"  {row.symbol:<8} {when} {row.source_a}/{row.source_b} {row.field}: "
            f"{row.value_a:g} vs {row.value_b:g} ({row.relative_difference:.2%})"
        )
