"""`marketpipe bench ...`: each benchmark against its reference, measured in the same run.

The measuring lives in :mod:`bench`; these commands pick the size, run it and print its table (or
one JSON object with ``--json``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from core.errors import ConfigurationError
from marketpipe.cli.context import JsonReport, overrides_of, settings_of

app = typer.Typer(help="Benchmarks against their references, measured in the same run.", no_args_is_help=True)


@app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of 1-minute bars")] = 100,
    sessions: Annotated[int, typer.Option(min=1, help="sessions per symbol")] = 20,
    naive_symbols: Annotated[int, typer.Option(min=1, help="symbols for the naive SDK + to_sql baseline")] = 10,
    latency_symbols: Annotated[
        int, typer.Option(min=1, max=999, help="symbols of the part under the sandbox's vendor latency")
    ] = 400,
    latency_sessions: Annotated[
        int, typer.Option(min=1, max=100, help="sessions per symbol (one vendor page) under latency")
    ] = 5,
    latency_workers: Annotated[
        int,
        typer.Option(
            min=1, max=8, help="flow processes sharing the rate limit under latency, each a shard of the symbols"
        ),
    ] = 1,
    as_json: JsonReport = False,
) -> None:
    """End-to-end ingest vs a naive baseline on loopback and under a vendor's latency and rate
    limit, CPU per bar against the hot writer's, the hot writer vs psql \\copy, Prefect's overhead."""
    from bench import ingest as bench

    report = bench.run(
        settings_of(ctx),
        symbols=symbols,
        sessions=sessions,
        overrides=overrides_of(ctx),
        naive_symbols=naive_symbols,
        latency_symbols=latency_symbols,
        latency_sessions=latency_sessions,
        latency_workers=latency_workers,
    )
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))


@app.command("storage")
def bench_storage(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of synthetic 1-minute bars")] = 5000,
    sessions: Annotated[int, typer.Option(min=2, help="sessions per symbol")] = 20,
    as_json: JsonReport = False,
    skip_tiering: Annotated[bool, typer.Option("--skip-tiering", help="no tiering and no cold read")] = False,
    skip_compression: Annotated[
        bool,
        typer.Option(
            "--skip-compression", help="no native compression, scanners on compressed chunks or ingest with a policy"
        ),
    ] = False,
    keep: Annotated[bool, typer.Option("--keep", help="leave the bench database (and lake objects) behind")] = False,
    reuse: Annotated[
        bool, typer.Option("--reuse", help="scanners only, on the bars a --keep run left (same --symbols/--sessions)")
    ] = False,
) -> None:
    """Scanner latencies on uncompressed and compressed chunks, compression ratio, ingest with a
    compression policy vs without, tiering throughput, lake/hot bytes and cold vs hot reads on
    synthetic bars (the compression parts need TimescaleDB's full edition)."""
    from bench import storage as bench

    report = bench.run(
        settings_of(ctx),
        symbols=symbols,
        sessions=sessions,
        keep=keep,
        skip_tiering=skip_tiering,
        skip_compression=skip_compression,
        reuse=reuse,
    )
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))


@app.command("features")
def bench_features(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of synthetic daily bars")] = 1000,
    bars: Annotated[int, typer.Option(min=2, help="bars per symbol")] = 2000,
    repeat: Annotated[int, typer.Option(min=1, help="timed runs of each side (the best counts)")] = 5,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="instead: the features flow on Dask from the lake; 'local' (LocalClusters of --workers "
            "processes) or a scheduler address tcp://HOST:PORT (the workers it has)"
        ),
    ] = None,
    cluster_symbols: Annotated[int, typer.Option(min=1, help="--cluster: symbols of 1-minute bars")] = 200,
    sessions: Annotated[int, typer.Option(min=1, max=250, help="--cluster: sessions of 390 bars per symbol")] = 20,
    workers: Annotated[str, typer.Option(help="--cluster local: worker counts to measure, comma-separated")] = "1,2",
    symbols_per_shard: Annotated[int, typer.Option(min=1, help="--cluster: symbols per task")] = 25,
    as_json: JsonReport = False,
) -> None:
    """The full standard feature set through the engine vs TA-Lib per symbol (SMA, EMA, RSI, MACD,
    BBANDS, ATR, OBV): throughputs, their ratio, JIT compile time and peak extra memory. With
    --cluster: the features flow on Dask workers reading the lake, bars/s per worker count, scaling
    and the projected hours of a 10k-symbol x 10-year universe of 1-minute bars."""
    if cluster is not None:
        from bench import features_cluster

        report = features_cluster.run(
            settings_of(ctx),
            cluster=check_cluster(cluster),
            symbols=cluster_symbols,
            sessions=sessions,
            workers=worker_counts(workers),
            symbols_per_shard=symbols_per_shard,
            overrides=overrides_of(ctx),
        )
        typer.echo(json.dumps(report, indent=2, default=str) if as_json else features_cluster.render_table(report))
        return
    from bench import features as bench
    from features import feature_params

    report = bench.run(symbols, bars, repeat=repeat, params=feature_params(settings_of(ctx).features))
    typer.echo(json.dumps(report, indent=2) if as_json else bench.render_table(report))


def check_cluster(cluster: str) -> str:
    """'local' or a scheduler address, as compute.dask_address accepts them."""
    from core.settings import ComputeSettings

    if cluster != "local":
        try:
            ComputeSettings(dask_address=cluster)
        except ValueError:
            raise ConfigurationError(
                f"--cluster {cluster!r}: use 'local' or a Dask scheduler address tcp://HOST:PORT"
            ) from None
    return cluster


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ConfigurationError(f"--workers {text!r}: give worker counts of 1 or more, comma-separated, e.g. 1,2")
    return sorted(set(counts))


@app.command("stream")
def bench_stream(
    ctx: typer.Context,
    messages: Annotated[int, typer.Option(min=1, help="messages of the sustained (speed=0) phase")] = 500_000,
    latency_messages: Annotated[int, typer.Option(min=1, help="messages of the paced 20k msgs/s phase")] = 400_000,
    naive_messages: Annotated[int, typer.Option(min=1, help="messages of the naive SDK + INSERT phase")] = 30_000,
    seconds: Annotated[float, typer.Option(min=0.1, help="each phase stops after this many seconds at most")] = 60.0,
    keep: Annotated[bool, typer.Option("--keep", help="leave the bench database behind")] = False,
    sandbox_url: Annotated[
        str | None, typer.Option(help="a running sandbox to stream from [default: one the bench starts]")
    ] = None,
    as_json: JsonReport = False,
) -> None:
    """The stream service against a sandbox in its own process: sustained msgs/s and msgs per
    consumer CPU-second, p50/p99 exchange-to-commit latency at 20k msgs/s, and the ratio to massive's
    WebSocketClient with one INSERT per message; into a scratch database."""
    from bench import stream as bench

    report = bench.run(
        settings_of(ctx),
        messages=messages,
        latency_messages=latency_messages,
        naive_messages=naive_messages,
        seconds=seconds,
        keep=keep,
        sandbox_url=sandbox_url,
    )
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))


@app.command("replica")
def bench_replica(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of synthetic 1-minute bars")] = 1000,
    sessions: Annotated[int, typer.Option(min=3, help="sessions per symbol")] = 5,
    repeats: Annotated[int, typer.Option(min=2, help="timed calls of each scanner on each side")] = 30,
    keep: Annotated[bool, typer.Option("--keep", help="leave the bench databases behind")] = False,
    as_json: JsonReport = False,
) -> None:
    """Scanner p50/p95 on the read replica beside the primary, idle and while the primary ingests a
    stream at 20k msgs/s (the replica's lag and the load average beside them); needs `marketpipe up --replica`."""
    from bench import replica as bench

    report = bench.run(settings_of(ctx), symbols=symbols, sessions=sessions, repeats=repeats, keep=keep)
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))


@app.command("options")
def bench_options(
    quotes: Annotated[int, typer.Option(min=1, help="synthetic option quotes solved by the kernel")] = 2_000_000,
    vollib_quotes: Annotated[int, typer.Option(min=1, help="of those, how many vollib solves (one per call)")] = 20_000,
    repeat: Annotated[int, typer.Option(min=1, help="timed kernel runs (the best counts)")] = 5,
    threads: Annotated[int | None, typer.Option(min=1, help="numba threads [default: numba's count]")] = None,
    as_json: JsonReport = False,
) -> None:
    """Implied volatility: the numba kernel vs vollib on the same quotes (IV/s, ratio, max relative
    error against vollib in the same run), JIT compile time, the load it ran at."""
    from bench import options as bench

    report = bench.run(quotes, vollib_quotes=vollib_quotes, repeat=repeat, threads=threads)
    typer.echo(json.dumps(report, indent=2) if as_json else bench.render_table(report))


@app.command("news")
def bench_news(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols whose sandbox news makes the corpus")] = 60,
    days: Annotated[int, typer.Option(min=1, help="days of news")] = 180,
    batch: Annotated[int, typer.Option(min=1, help="items per processed batch (one poll's worth)")] = 500,
    embed: Annotated[bool, typer.Option(help="embed each new story (--no-embed: leave the stage out)")] = True,
    lanes: Annotated[
        int, typer.Option(min=1, help="batches stored at once (the flow's processor runs 2: one computes, one waits)")
    ] = 2,
    as_json: JsonReport = False,
) -> None:
    """News: items/s through clean + sentiment + dedup + embedding + store on one core, dedup
    precision/recall and sentiment accuracy against the sandbox's truth, the load it ran at."""
    from bench import news as bench

    report = bench.run(settings_of(ctx), symbols, days, batch, embed=embed, lanes=lanes)
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else bench.render_table(report))
