"""Watermarks: how far each (source, dataset, symbol, timeframe) has been committed to the hot store.

A watermark is the newest ``ts`` whose data has committed. It is advanced in the same transaction
as the data it covers (:func:`storage.hot.write_bars` does both) and never moves backwards
(``GREATEST`` in SQL), so it can lag the data after a crash but never be ahead of it. A later run
asks :func:`read_watermarks` where to resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg

from core.errors import StorageError
from core.model import PROVISIONAL_FLAG, sole_value

NO_TIMEFRAME = ""  # datasets without a timeframe (corporate actions, news)


@dataclass(frozen=True)
class Watermark:
    source: str
    dataset: str
    symbol: str
    timeframe: str
    high_water_ts: datetime
    updated_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.source, self.dataset, self.symbol, self.timeframe)


def watermarks_of(
    frame: pd.DataFrame, *, dataset: str, ts_column: str = "ts", source: str | None = None
) -> list[Watermark]:
    """The watermarks a frame establishes: its newest final ``ts`` per (source, symbol, timeframe).

    ``source`` overrides a ``source`` column; a frame without ``timeframe`` uses :data:`NO_TIMEFRAME`.
    A provisional bar (``quality_flags`` with :data:`core.model.PROVISIONAL_FLAG`: its window had
    not closed when served) establishes nothing, and neither does any bar at or after the first
    provisional one of its series: the next run resumes at or before it and stores it final.
    """
    if frame.empty:
        return []
    one = _one_series(frame, source)
    if one is not None:  # the usual frame (one symbol's bars of one vendor): no grouping needed
        return _one_series_watermark(frame, one, dataset, ts_column)
    keys = pd.DataFrame(
        {
            "source": frame["source"] if source is None else source,
            "symbol": frame["symbol"],
            "timeframe": frame["timeframe"] if "timeframe" in frame.columns else NO_TIMEFRAME,
            "ts": frame[ts_column],
        }
    )
    group = ["source", "symbol", "timeframe"]
    if "quality_flags" in frame.columns:
        provisional = (frame["quality_flags"].fillna(0).to_numpy(np.int64) & PROVISIONAL_FLAG) != 0
        if provisional.any():
            first = keys[provisional].groupby(group, sort=False, observed=True)["ts"].min().rename("first_provisional")
            keys = keys.join(first, on=group)
            keys = keys[keys["first_provisional"].isna() | (keys["ts"] < keys["first_provisional"])]
            keys = keys.drop(columns="first_provisional")
            if keys.empty:
                return []
    newest = keys.groupby(group, sort=True, observed=True)["ts"].max()
    return [
        Watermark(str(src), dataset, str(sym), str(tf), ts.to_pydatetime()) for (src, sym, tf), ts in newest.items()
    ]


def _one_series(frame: pd.DataFrame, source: str | None) -> tuple[str, str, str] | None:
    """(source, symbol, timeframe) when every row of ``frame`` has the same (none missing), else None."""
    columns = {"symbol": frame["symbol"]}
    if source is None:
        columns["source"] = frame["source"]
    if "timeframe" in frame.columns:
        columns["timeframe"] = frame["timeframe"]
    first = {name: sole_value(values) for name, values in columns.items()}
    if any(value is None for value in first.values()):
        return None
    return (
        source if source is not None else str(first["source"]),
        str(first["symbol"]),
        str(first["timeframe"]) if "timeframe" in first else NO_TIMEFRAME,
    )


def _one_series_watermark(
    frame: pd.DataFrame, series: tuple[str, str, str], dataset: str, ts_column: str
) -> list[Watermark]:
    """:func:`watermarks_of` for a frame of one series: its newest ts before its first provisional bar."""
    ts = frame[ts_column]
    if "quality_flags" in frame.columns:
        provisional = (frame["quality_flags"].fillna(0).to_numpy(np.int64) & PROVISIONAL_FLAG) != 0
        if provisional.any():
            ts = ts[ts < ts[provisional].min()]
    newest = ts.max()
    if pd.isna(newest):
        return []
    source, symbol, timeframe = series
    return [Watermark(source, dataset, symbol, timeframe, newest.to_pydatetime())]


def advance_watermarks(conn: psycopg.Connection, marks: Iterable[Watermark]) -> None:
    """Move each watermark forward to ``high_water_ts`` (never backwards), in one statement.

    Call it inside the transaction that writes the data the marks cover.
    """
    marks = list(marks)
    if not marks:
        return
    columns = list(zip(*((m.source, m.dataset, m.symbol, m.timeframe, m.high_water_ts) for m in marks), strict=True))
    try:
        conn.execute(
            """
            INSERT INTO ops.watermarks AS w (source, dataset, symbol, timeframe, high_water_ts)
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])
            ON CONFLICT (source, dataset, symbol, timeframe) DO UPDATE
                SET high_water_ts = EXCLUDED.high_water_ts, updated_at = now()
                WHERE EXCLUDED.high_water_ts > w.high_water_ts
            """,
            [list(c) for c in columns],
        )
    except psycopg.Error as exc:
        raise StorageError(f"cannot advance {len(marks)} watermark(s) (first {marks[0].key}): {exc}") from exc


def advance_watermark(
    conn: psycopg.Connection,
    *,
    source: str,
    dataset: str,
    symbol: str,
    high_water_ts: datetime,
    timeframe: str = NO_TIMEFRAME,
) -> None:
    """One watermark; see :func:`advance_watermarks`."""
    advance_watermarks(conn, [Watermark(source, dataset, symbol, timeframe, high_water_ts)])


def read_watermarks(
    conn: psycopg.Connection,
    *,
    source: str | None = None,
    dataset: str | None = None,
    symbols: Sequence[str] | None = None,
    timeframe: str | None = None,
) -> dict[tuple[str, str, str, str], Watermark]:
    """Committed watermarks, keyed by (source, dataset, symbol, timeframe); filters are optional."""
    rows = conn.execute(
        """
        SELECT source, dataset, symbol, timeframe, high_water_ts, updated_at FROM ops.watermarks
        WHERE (%(source)s::text IS NULL OR source = %(source)s)
          AND (%(dataset)s::text IS NULL OR dataset = %(dataset)s)
          AND (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s))
          AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
        """,
        {
            "source": source,
            "dataset": dataset,
            "symbols": list(symbols) if symbols is not None else None,
            "timeframe": timeframe,
        },
    ).fetchall()
    marks = [Watermark(*row) for row in rows]
    return {m.key: m for m in marks}
