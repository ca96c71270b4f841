"""Several vendors' bars of the same market (issue 18): where two vendors disagree.

The hot writer keeps one consolidated row per bar in market.bars_* (the vendor with the best
storage.source_precedence) and every other vendor's row in market.vendor_bars_*
(:func:`storage.hot.upsert_frame`, db/migrations/0018_vendor_bars.sql). Two vendors' prices of the
same bar should agree; where they differ by more than ``quality.vendor_disagreement_tolerance``
one of them is wrong, which no single vendor can tell: :func:`read_vendor_disagreements` lists
those bars (``market.vendor_disagreements``, db/routines/15_vendor_bars.sql).

The precedence also decides between rows of one bar in different tiers, or in two lake objects
(:func:`source_ranks`): the read router's merge and lake compaction rank them as the hot writer
does, so the outcome does not depend on which tier the better vendor's row had reached.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import psycopg

from core.errors import RequestError, StorageError
from core.model import canonical_timeframe, to_utc

DISAGREEMENT_COLUMNS = (
    "symbol",
    "timeframe",
    "ts",
    "session_date",
    "source_a",
    "source_b",
    "field",
    "value_a",
    "value_b",
    "relative_difference",
)


def source_ranks(sources: Sequence[object], precedence: Sequence[str]) -> np.ndarray:
    """Pure: each source's rank in ``precedence`` (0 is best), sources it does not list after every
    listed one and equal among themselves: the order the hot writer's merge guard applies in SQL
    (``storage.hot._ranked_merge``), for rows ranked outside the hot store."""
    order = {name: rank for rank, name in enumerate(precedence)}
    unlisted = len(precedence)
    codes, names = pd.factorize(pd.Series(sources, dtype=object), use_na_sentinel=False)
    return np.array([order.get(str(name), unlisted) for name in names], dtype=np.int64)[codes]


def read_vendor_disagreements(
    conn: psycopg.Connection,
    symbols: Sequence[str] | None,
    start: object,
    end: object,
    timeframe: str = "1day",
    *,
    tolerance: float,
) -> pd.DataFrame:
    """Bars of ``timeframe`` with ``start <= ts < end`` (``symbols`` None: all) on which two vendors'
    open, high, low or close differ by more than ``tolerance`` (relative to their mean): one row
    per bar and pair of vendors (``source_a < source_b``), the field that differs most, sorted by
    symbol, ts and the pair."""
    if not tolerance > 0:
        raise RequestError(f"tolerance {tolerance!r} must be a positive fraction, e.g. 0.005 for 0.5 %")
    tf = canonical_timeframe(timeframe)
    try:
        rows = conn.execute(
            "SELECT * FROM market.vendor_disagreements(%s, %s, %s, %s, %s)",
            (
                list(symbols) if symbols is not None else None,
                to_utc(start).to_pydatetime(),
                to_utc(end).to_pydatetime(),
                tf,
                float(tolerance),
            ),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot compare the vendors' {tf} bars: {exc}") from exc
    return pd.DataFrame(rows, columns=list(DISAGREEMENT_COLUMNS))
