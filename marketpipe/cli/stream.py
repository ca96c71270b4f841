"""`marketpipe stream ...`: live data from a vendor's WebSocket into the hot store, and its tail.

``marketpipe stream --source polygon --symbols AAPL,MSFT [--hybrid]`` runs the stream service in
this process until Ctrl-C / SIGTERM (or ``--duration``), printing a status line every few seconds;
stopping drains: what was read is committed, open windows are stored provisional. ``marketpipe stream tail
--symbols AAPL`` prints closed bars as streams commit them (LISTEN/NOTIFY), reconnecting after a lost
database connection from the change it reached. The long-running
deployment `stream` (queue `streaming`) hosts the same service as a Prefect flow run.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Annotated

import typer

from marketpipe.cli.context import settings_of

app = typer.Typer(
    help="Live streams: `stream --source S --symbols ...` runs one; `stream tail` prints closed bars as they commit.",
    invoke_without_command=True,
)

Symbols = Annotated[str | None, typer.Option("--symbols", "-s", help="comma-separated symbols, e.g. AAPL,MSFT")]


@app.callback()
def stream(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="polygon or alpaca")] = "polygon",
    symbols: Symbols = None,
    datasets: Annotated[
        str, typer.Option(help="comma-separated: trades, quotes, bars; or news alone (Alpaca's news stream)")
    ] = "trades,quotes,bars",
    hybrid: Annotated[
        bool, typer.Option("--hybrid", help="fill every gap (start, reconnects) over REST before the stream takes over")
    ] = False,
    feed: Annotated[str | None, typer.Option(help="Alpaca feed: iex, sip or test")] = None,
    url: Annotated[str | None, typer.Option(help="stream endpoint [default: the vendor's, or the sandbox's]")] = None,
    duration: Annotated[
        float | None, typer.Option(help="stop (and drain) after this many seconds [default: until Ctrl-C]")
    ] = None,
) -> None:
    """Stream SOURCE's live trades, quotes and bars for SYMBOLS into the hot store (or, with
    --datasets news, Alpaca's news into the news store: --symbols '*' for every article)."""
    if ctx.invoked_subcommand is not None:
        return
    from core.errors import RequestError
    from streaming.service import StreamPlan, StreamService

    if symbols is None:
        raise RequestError("no symbols to stream; pass e.g. --symbols AAPL,MSFT (see `marketpipe stream --help`)")
    if duration is not None and duration <= 0:
        raise RequestError(f"--duration must be positive seconds, got {duration}")
    plan = StreamPlan.of(source, symbols, datasets, hybrid=hybrid, feed=feed, url=url)
    service = StreamService(settings_of(ctx), plan, heartbeat=_StatusLine())
    report = asyncio.run(_run_until_stopped(service, duration))
    summary = report.as_dict()
    typer.echo(
        f"stream {plan.source} stopped: {summary['messages']:,} messages, {summary['trades']:,} trades and "
        f"{summary['quotes']:,} quotes written, {summary['final_bars']:,} final bars, "
        f"{summary['connects']} connect(s), {summary['catchups']} catch-up(s), {summary['dead']} dead-lettered"
        + (f", {summary['news']:,} news items written" if "news" in plan.datasets else "")
    )


async def _run_until_stopped(service, duration: float | None):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    return await service.run(stop)


class _StatusLine:
    """One line every few seconds: throughput, what was written, the connection's health."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.last = time.monotonic()
        self.last_messages = 0

    def __call__(self, report) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        rate = (report.messages - self.last_messages) / (now - self.last)
        self.last, self.last_messages = now, report.messages
        conn = report.connection
        typer.echo(
            f"{report.messages:,} msgs ({rate:,.0f}/s), {report.trades:,} trades, {report.final_bars:,} bars, "
            f"newest {report.newest_event}, reconnects {max(report.connects - 1, 0)}, "
            f"spilled {conn.get('spilled', 0)}, dropped {conn.get('dropped', 0)}",
            err=True,
        )


@app.command()
def tail(
    ctx: typer.Context,
    symbols: Symbols = None,
    timeframe: Annotated[str, typer.Option(help="1min, or a stream window such as 5s")] = "1min",
    count: Annotated[int | None, typer.Option(help="stop after this many bars [default: until Ctrl-C]")] = None,
    since: Annotated[
        int | None, typer.Option(help="resume after this change number (printed when a tail stops) [default: now]")
    ] = None,
    reconnect_for: Annotated[
        float, typer.Option(help="after a lost database connection, reconnect for up to this many seconds (0: stop)")
    ] = 120.0,
) -> None:
    """Print closed bars of SYMBOLS as streams commit them (a removed bar as 'removed'). A lost
    database connection (a PostgreSQL restart) is reconnected, resuming from the change reached."""
    from core.errors import RequestError
    from storage.streams import stream_timeframe, subscribe_bars

    if not symbols:
        raise RequestError("no symbols to tail; pass e.g. --symbols AAPL,MSFT")
    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    stream_timeframe(timeframe)  # a bad timeframe is refused before connecting
    subscription = subscribe_bars(settings_of(ctx), names, timeframe, since=since, reconnect_for_s=reconnect_for)

    async def run() -> None:
        printed = 0
        async for bars in subscription:
            lines = [
                f"{row.ts:%Y-%m-%d %H:%M:%S} {row.symbol:<8} {row.timeframe:>5} o {row.open:.4f} h {row.high:.4f}"
                f" l {row.low:.4f} c {row.close:.4f} v {row.volume:,} ({row.source})"
                for row in bars.itertuples(index=False)
            ]
            lines += [
                f"{gone.ts:%Y-%m-%d %H:%M:%S} {gone.symbol:<8} {gone.timeframe:>5} removed ({gone.source})"
                for gone in bars.attrs["removed"]
            ]
            for line in lines:
                typer.echo(line)
                printed += 1
                if count is not None and printed >= count:
                    await subscription.aclose()
                    return

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
    finally:
        if subscription.seq is not None:
            typer.echo(f"tail stopped at change {subscription.seq} (resume with --since {subscription.seq})", err=True)
