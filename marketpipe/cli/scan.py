"""`marketpipe scan ...`: SQL scanners over the hot store.

Each scan command builds its call with :mod:`storage.scanners` (which refuses bad arguments
with a ScanArgumentError before connecting) and prints the rows as a table. Scans run on the read
replica when one is enabled (``database.read_replica``) and within its lag bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from marketpipe.cli.context import settings_of

if TYPE_CHECKING:
    from storage.scanners import ScanQuery

app = typer.Typer(
    help="SQL scanners over the hot store (the same views scanner processes query from psql).", no_args_is_help=True
)

Timeframe = Annotated[str, typer.Option(help="1min, 5min, 15min, 1hour or 1day")]
Limit = Annotated[int, typer.Option(help="at most this many rows")]
Direction = Annotated[str, typer.Option(help="up (gainers), down (losers) or both")]
AsJson = Annotated[bool, typer.Option("--json", help="one JSON array of rows")]


def _print_scan(ctx: typer.Context, query: ScanQuery, as_json: bool) -> None:
    from db.replica import read_connection
    from storage.scanners import run_scan

    # the read replica when database.read_replica.enabled and it lags no more than its max_lag_seconds
    with read_connection(settings_of(ctx), autocommit=True) as conn:
        frame = run_scan(conn, query)
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", date_unit="s"))
    elif frame.empty:
        typer.echo(f"{query.name}: no rows")
    else:
        typer.echo(frame.to_string(index=False, float_format=lambda v: f"{v:,.4f}"))


@app.command("latest")
def scan_latest(ctx: typer.Context, timeframe: Timeframe = "1min", as_json: AsJson = False) -> None:
    """The latest bar of every symbol (view scan.latest_bars)."""
    from storage import scanners

    _print_scan(ctx, scanners.latest_bars(timeframe), as_json)


@app.command("movers")
def scan_movers(
    ctx: typer.Context,
    minutes: Annotated[int | None, typer.Option(help="change over the last N minutes (intraday bars)")] = None,
    sessions: Annotated[int | None, typer.Option(help="change over the last N sessions (daily bars)")] = None,
    limit: Limit = 20,
    direction: Direction = "both",
    timeframe: Annotated[str, typer.Option(help="intraday bars for --minutes: 1min, 5min, 15min, 1hour")] = "1min",
    as_json: AsJson = False,
) -> None:
    """Top movers: latest close vs the close N minutes (or N sessions) earlier, in percent."""
    from storage import scanners

    query = scanners.top_movers(minutes, sessions, limit=limit, direction=direction, timeframe=timeframe)
    _print_scan(ctx, query, as_json)


@app.command("volume-spikes")
def scan_volume_spikes(
    ctx: typer.Context,
    lookback: Annotated[int, typer.Option(help="bars of history before the latest (>= 2)")] = 20,
    min_z: Annotated[float, typer.Option(help="minimum z-score of the latest volume")] = 3.0,
    timeframe: Timeframe = "1min",
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """Latest volume's z-score vs the symbol's previous LOOKBACK bars."""
    from storage import scanners

    _print_scan(ctx, scanners.volume_spikes(lookback, min_z, timeframe=timeframe, limit=limit), as_json)


@app.command("gaps")
def scan_gaps(
    ctx: typer.Context,
    min_pct: Annotated[float, typer.Option(help="minimum absolute gap in percent")] = 2.0,
    direction: Direction = "both",
    timeframe: Timeframe = "1min",
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """Opening gaps: first open of the latest session vs the previous session's last close."""
    from storage import scanners

    _print_scan(ctx, scanners.opening_gaps(min_pct, direction, timeframe=timeframe, limit=limit), as_json)


@app.command("highs-lows")
def scan_highs_lows(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="bars (sessions, for 1day) the latest bar must top")] = 52,
    timeframe: Timeframe = "1day",
    as_json: AsJson = False,
) -> None:
    """New N-day highs and lows: the latest bar above/below every bar of the N before it."""
    from storage import scanners

    _print_scan(ctx, scanners.new_highs_lows(days, timeframe=timeframe), as_json)


@app.command("rsi")
def scan_rsi(
    ctx: typer.Context,
    above: Annotated[float, typer.Option(help="overbought at or above")] = 70.0,
    below: Annotated[float, typer.Option(help="oversold at or below")] = 30.0,
    timeframe: Timeframe = "1day",
    feature_set: Annotated[str | None, typer.Option(help="feature-set version [default: each symbol's latest]")] = None,
    as_json: AsJson = False,
) -> None:
    """RSI extremes from the feature store (each symbol's latest feature row)."""
    from storage import scanners

    _print_scan(ctx, scanners.rsi_extremes(above, below, timeframe=timeframe, feature_set=feature_set), as_json)


@app.command("news-sentiment")
def scan_news_sentiment(
    ctx: typer.Context,
    hours: Annotated[int, typer.Option(help="news published in the last HOURS before --as-of")] = 24,
    direction: Annotated[str, typer.Option(help="down (most negative first), up, or both (by size)")] = "both",
    min_items: Annotated[int, typer.Option(help="fewest news items a symbol needs")] = 1,
    as_of: Annotated[
        str | None, typer.Option(help="the end of the window: a date (its end, New York) or a time [default: now]")
    ] = None,
    limit: Limit = 20,
    as_json: AsJson = False,
) -> None:
    """News sentiment: symbols with the most negative/positive news of the last hours, with their volume z-score."""
    from storage import scanners

    query = scanners.news_sentiment(hours, direction, min_items=min_items, as_of=as_of, limit=limit)
    _print_scan(ctx, query, as_json)


@app.command("iv-rank")
def scan_iv_rank(
    ctx: typer.Context,
    lookback_days: Annotated[int, typer.Option(help="calendar days of daily values the newest is ranked in")] = 365,
    min_days: Annotated[int, typer.Option(help="fewest days of values an underlying needs (>= 2)")] = 2,
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """IV rank: each underlying's newest daily 30-day ATM implied volatility vs its range over the lookback."""
    from storage import scanners

    _print_scan(ctx, scanners.option_iv_rank(lookback_days, min_days=min_days, limit=limit), as_json)


@app.command("unusual-options")
def scan_unusual_options(
    ctx: typer.Context,
    min_ratio: Annotated[float, typer.Option(help="minimum session volume / open interest")] = 2.0,
    min_volume: Annotated[int, typer.Option(help="minimum session volume in contracts")] = 100,
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """Unusual option activity: contracts of the newest snapshots trading far above their open interest."""
    from storage import scanners

    _print_scan(ctx, scanners.unusual_options(min_ratio, min_volume, limit=limit), as_json)


@app.command("earnings")
def scan_earnings(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="reports dated within this many days")] = 14,
    as_of: Annotated[str | None, typer.Option("--as-of", help="as known at this date or instant [now]")] = None,
    limit: Limit = 50,
    as_json: AsJson = False,
) -> None:
    """Upcoming earnings: each symbol's next report with its estimates, the last EPS surprise and
    the options' implied move (ATM straddle mid of the first expiry after the report / price)."""
    from storage import scanners

    _print_scan(ctx, scanners.upcoming_earnings(days, as_of=as_of, limit=limit), as_json)
