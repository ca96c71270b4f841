"""Bars of 5min, 15min, 1hour and 1day aggregated from the stored 1-minute bars.

TimescaleDB's full edition keeps them as hierarchical continuous aggregates with real-time
aggregation (db/routines/70_continuous_aggregates.sql says how the buckets match the vendors':
clock-aligned intraday windows, New York days, regular-session minutes only, half days included,
volume-weighted vwap). This module reads them and states which bar wins when the hot store or the
lake also holds the vendor's own bars of the timeframe:

    **A stored bar wins over every aggregate bucket its window overlaps; the aggregate fills the
    rest.** The vendor's bars are what the vendor says about its own trades (a late correction,
    an auction print our minutes missed), so where we have them they are the answer; where we
    do not (the vendor was never asked for 5-minute bars, or only for some sessions) the
    aggregate of our stored minutes is. Overlap rather than equal timestamps, so a vendor whose
    grid is offset from the clock (Yahoo's hours start at 09:30) is never interleaved with
    aggregate buckets of the same hours.

:class:`storage.router.StorageRouter` applies the rule in ``read_bars`` (and counts aggregate
buckets as stored in ``bars_per_session``, so gap detection asks no vendor for bars the minutes
already give). :func:`storage.hot.read_bars` stays the stored rows only.

On the Apache edition the routine never applies (it waits for the full edition), the views do not
exist and :func:`aggregates_available` says so: reads return the stored bars exactly as before.

Refreshing: the policies refresh the last 3 days; an older range written later (a backfill) is
refreshed by :func:`refresh_bar_aggregates`, which never reaches before the hot window, because a
refresh over a range tiering has dropped to the lake would materialize emptiness where the bars
were. The ranges to refresh are recorded in ``ops.aggregate_refreshes`` by the transaction that
writes the bars (:func:`record_changed_minutes`), so a run killed before its refresh leaves them
to the next (:func:`recorded_refreshes`, :func:`forget_refreshes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from core.errors import StorageError
from core.model import BARS, EXCHANGE_TZ, canonical_timeframe, frame, to_utc

# Bottom-up: a level is refreshed after the one it reads.
AGGREGATE_VIEWS = {
    "5min": "market.bars_agg_5min",
    "15min": "market.bars_agg_15min",
    "1hour": "market.bars_agg_1hour",
    "1day": "market.bars_agg_1day",
}
AGGREGATED_TIMEFRAMES = frozenset(AGGREGATE_VIEWS)
# The refresh policies' start_offset (db/routines/70_continuous_aggregates.sql): writes older than
# this are refreshed by refresh_bar_aggregates, and the hot window of 1-minute bars must be longer.
POLICY_WINDOW = timedelta(days=3)
AGGREGATE_SOURCE_SUFFIX = "/1min"  # source of an aggregate bar: "<the minutes' source>/1min"
_BUCKET = {
    "5min": pd.Timedelta(minutes=5),
    "15min": pd.Timedelta(minutes=15),
    "1hour": pd.Timedelta(hours=1),
    "1day": pd.Timedelta(hours=23),  # a New York day is 23-25 h; buckets start at midnight, so any
    # two distinct days are >= 23 h apart and a stored daily bar stamped at midnight overlaps one
}


def is_aggregated(timeframe: str) -> bool:
    """Whether bars of ``timeframe`` (any spelling) are kept as a continuous aggregate of 1min bars."""
    return canonical_timeframe(timeframe) in AGGREGATED_TIMEFRAMES


def aggregates_available(conn: psycopg.Connection) -> bool:
    """Whether this database has the aggregates (full edition, routine 70 applied): one catalog lookup."""
    row = conn.execute(
        "SELECT to_regprocedure('market.aggregated_bars(text[], timestamptz, timestamptz, text)') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def read_aggregated_bars(
    conn: psycopg.Connection, symbols: Sequence[str], start: object, end: object, timeframe: str
) -> pd.DataFrame:
    """Aggregate bars of ``symbols`` with ``start <= ts < end`` (canonical BARS frame, sorted by
    symbol and ts; ``source`` is the minutes' vendor followed by ``/1min``)."""
    tf = canonical_timeframe(timeframe)
    if tf not in AGGREGATED_TIMEFRAMES:
        raise StorageError(f"no aggregate of timeframe {timeframe!r}; aggregated timeframes: {sorted(AGGREGATE_VIEWS)}")
    lo, hi = to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()
    try:
        rows = conn.execute(
            "SELECT symbol, ts, timeframe, open, high, low, close, volume, vwap, trade_count, source || %s "
            "FROM market.aggregated_bars(%s, %s, %s, %s)",
            (AGGREGATE_SOURCE_SUFFIX, list(symbols), lo, hi, tf),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read {tf} aggregate bars of {list(symbols)[:5]}: {exc}") from exc
    columns: list[Sequence[object]] = list(zip(*rows, strict=True)) if rows else [[] for _ in BARS]
    return frame(BARS, dict(zip(BARS, columns, strict=True)), what="aggregate bars")


def closed_buckets(aggregated: pd.DataFrame, timeframe: str, now: datetime) -> pd.DataFrame:
    """Pure: the aggregate bars whose window has closed by ``now``. Real-time aggregation also
    returns the bucket still forming (today's day, the current five minutes); a vendor serves no
    such bar as history, and a feature or a backtest fed one would see a bar change under it, so
    readers get a bucket once its window is over: intraday buckets at ts + width, a day at the
    next New York midnight."""
    if aggregated.empty:
        return aggregated
    tf = canonical_timeframe(timeframe)
    starts = pd.DatetimeIndex(aggregated["ts"])
    if tf == "1day":  # a calendar day later in New York: 23, 24 or 25 hours
        ends = (starts.tz_convert(EXCHANGE_TZ) + pd.DateOffset(days=1)).tz_convert("UTC")
    else:
        ends = starts + _BUCKET[tf]
    keep = np.asarray(ends <= to_utc(now))
    return aggregated if keep.all() else aggregated[keep].reset_index(drop=True)


def fill_from_aggregate(stored: pd.DataFrame, aggregated: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Pure: the stored bars, plus every aggregate bar whose bucket no stored bar of its symbol
    overlaps (the module's rule), sorted by symbol and ts. Both frames hold one timeframe."""
    if aggregated.empty:
        return stored
    if stored.empty:
        return aggregated
    width = _BUCKET[canonical_timeframe(timeframe)].value
    keep = np.ones(len(aggregated), dtype=bool)
    agg_symbols = aggregated["symbol"].astype(str).to_numpy()
    agg_ts = pd.DatetimeIndex(aggregated["ts"]).as_unit("ns").asi8
    for symbol, rows in stored.groupby(stored["symbol"].astype(str), sort=False):
        mine = np.flatnonzero(agg_symbols == symbol)
        if not len(mine):
            continue
        windows = np.sort(pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8)
        at = agg_ts[mine]
        # the nearest stored start on either side; two windows of one width overlap iff their
        # starts are less than a width apart
        right = np.searchsorted(windows, at, side="left")
        after = windows[np.minimum(right, len(windows) - 1)]
        before = windows[np.maximum(right - 1, 0)]
        overlaps = (np.abs(after - at) < width) | (np.abs(at - before) < width)
        keep[mine[overlaps]] = False
    merged = pd.concat([stored, aggregated[keep]], ignore_index=True)
    return merged.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)


def refresh_window(start: object, end: object, hot_since: datetime) -> tuple[datetime, datetime] | None:
    """Pure: ``[start, end)`` widened to whole New York days, then clipped to the hot window (never
    before ``hot_since`` plus a day of margin for a tiering run that may be dropping its oldest
    chunk meanwhile); None when nothing of it is left.

    Whole days because TimescaleDB refreshes only the buckets a window wholly contains (and every
    level's buckets nest in New York days); the clip because a refresh over a range tiering has
    dropped would materialize emptiness where the bars were.
    """
    lo = to_utc(start).tz_convert(EXCHANGE_TZ).floor("D", ambiguous=False, nonexistent="shift_forward")
    hi = to_utc(end).tz_convert(EXCHANGE_TZ)
    if hi != hi.floor("D", ambiguous=False, nonexistent="shift_forward"):
        hi = (hi + pd.Timedelta(days=1)).floor("D", ambiguous=False, nonexistent="shift_forward")
    floor = to_utc(hot_since + timedelta(days=1)).tz_convert(EXCHANGE_TZ)
    if lo < floor:
        lo = (floor + pd.Timedelta(days=1)).floor("D", ambiguous=False, nonexistent="shift_forward")
    return (lo.tz_convert("UTC").to_pydatetime(), hi.tz_convert("UTC").to_pydatetime()) if lo < hi else None


def refresh_bar_aggregates(
    conn: psycopg.Connection, start: object, end: object, hot_since: datetime
) -> tuple[datetime, datetime] | None:
    """Materialize every level over ``[start, end)`` clipped by :func:`refresh_window`, bottom-up
    (5min first: each level reads the one below); returns the window refreshed, or None.

    For bars written outside the policies' 3-day window (a backfill, a late correction): the
    policies leave them to this call. ``force``: every bucket of the window is recomputed from the
    level below, whatever TimescaleDB's invalidation log says (it misses rows COPYed into a
    hypertable with transition-table triggers in 2.28.3; :func:`storage.hot.upsert_frame` makes
    up for it, this does not depend on it). ``conn`` must be in autocommit mode (TimescaleDB refuses to
    refresh inside a transaction block). A database without the aggregates (the Apache edition) refreshes nothing.
    """
    window = refresh_window(start, end, hot_since)
    if window is None or not aggregates_available(conn):
        return None
    if not conn.autocommit:
        raise StorageError("refresh_bar_aggregates needs an autocommit connection (no refresh in a transaction)")
    for view in AGGREGATE_VIEWS.values():
        try:
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, %s, %s, force => true)", (view, *window))
        except psycopg.Error as exc:
            raise StorageError(f"cannot refresh {view} over [{window[0]}, {window[1]}): {exc}") from exc
    return window


def record_changed_minutes(conn: psycopg.Connection, ranges: Sequence[tuple[datetime, datetime]]) -> None:
    """Record, in the caller's transaction (the one writing the bars), the ``[first, last]`` minute
    ranges whose aggregates must be refreshed: committed with the bars or not at all."""
    if not ranges:
        return
    conn.execute(
        "INSERT INTO ops.aggregate_refreshes (range_from, range_to)"
        " SELECT * FROM unnest(%s::timestamptz[], %s::timestamptz[])",
        ([lo for lo, _ in ranges], [hi for _, hi in ranges]),
    )


def recorded_refreshes(conn: psycopg.Connection) -> list[tuple[int, datetime, datetime]]:
    """Every recorded range still to refresh: (id, first minute, last minute), oldest first."""
    rows = conn.execute("SELECT id, range_from, range_to FROM ops.aggregate_refreshes ORDER BY id").fetchall()
    return [(int(i), lo, hi) for i, lo, hi in rows]


def forget_refreshes(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    """Delete the recorded ranges ``ids``, refreshed (or left to the policies): those recorded
    meanwhile stay for the next refresh."""
    if ids:
        conn.execute("DELETE FROM ops.aggregate_refreshes WHERE id = ANY(%s)", (list(ids),))


def merged_ranges(ranges: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Pure: ``[first, last]`` ranges merged where they overlap or touch (within a day: a refresh
    widens each to whole New York days anyway), sorted. One refresh per merged range instead of
    one per recorded series, and no refresh of the months between two distant ones."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
