"""Corporate actions in the hot store, and the backward price adjustment they imply.

Splits and dividends (``core.model.CORPORATE_ACTIONS`` frames) are upserted into
``market.corporate_actions`` (migration 0004) by the hot writer's staging machinery, keyed on
(symbol, action, ex_date). Raw bars are never rewritten: adjusted bars are computed at read time
by ``market.adjusted_bars`` (migration 0005, read through :func:`storage.hot.read_bars`).

The adjustment is the standard (CRSP-style) backward one. For a bar of session date ``d``::

    price factor  = product over events with ex_date > d of
                      split     old_rate / new_rate            (2-for-1 -> 1/2)
                      dividend  1 - D / close_prev             ('all' only; D = cash per share)
    volume factor = 1 / (product of the split factors alone)

``close_prev`` is the raw close of the last session before the ex date. A dividend sharing its ex
date with a split is taken in post-split units (close_prev is converted by that split). A dividend
without a usable close_prev (none stored, or D >= close_prev) has factor 1. ``'split'`` applies
the split factors only; ``'all'`` gives total-return prices.

:func:`adjustment_factors` and :func:`apply_adjustment` are the same computation on frames: the
reference the SQL is tested against, and the way to adjust bars read from the lake.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import psycopg

from core.model import CORPORATE_ACTIONS, empty_frame, frame, session_date
from storage.hot import Adjustment, Column, TableSpec, UpsertResult, check_adjustment, upsert_frame, utc_index
from storage.watermarks import advance_watermarks, watermarks_of

_ACTION_TYPES = {
    "symbol": "text",
    "action": "text",
    "ex_date": "date",
    "new_rate": "float8",
    "old_rate": "float8",
    "amount": "float8",
    "currency": "text",
    "record_date": "date",
    "pay_date": "date",
    "source": "text",
}
CORPORATE_ACTIONS_TABLE = TableSpec(
    name="market.corporate_actions",
    columns=tuple(Column(name, _ACTION_TYPES[name]) for name in CORPORATE_ACTIONS),
    key=("symbol", "action", "ex_date"),
    time_column="ex_date",
)


def upsert_corporate_actions(conn: psycopg.Connection, frame: pd.DataFrame) -> UpsertResult:
    """Idempotent upsert of splits and dividends (same semantics as the bars writer)."""
    return upsert_frame(conn, frame, CORPORATE_ACTIONS_TABLE)


def write_corporate_actions(
    conn: psycopg.Connection, frame: pd.DataFrame, *, dataset: str = "corporate_actions"
) -> UpsertResult:
    """Upsert actions and advance their watermarks (newest ex date per source and symbol) together."""
    with conn.transaction():
        result = upsert_corporate_actions(conn, frame)
        advance_watermarks(conn, watermarks_of(frame, dataset=dataset, ts_column="ex_date"))
    return result


def read_corporate_actions(conn: psycopg.Connection, symbols: list[str]) -> pd.DataFrame:
    """Stored splits and dividends of ``symbols`` in the canonical CORPORATE_ACTIONS frame
    (dates as midnight UTC, like the parsers produce them)."""
    names = list(CORPORATE_ACTIONS)
    rows = conn.execute(
        f"SELECT {', '.join(names)} FROM market.corporate_actions WHERE symbol = ANY(%s) ORDER BY symbol, ex_date",
        (symbols,),
    ).fetchall()
    if not rows:  # most symbols: nothing to coerce
        return empty_frame(CORPORATE_ACTIONS)
    columns: list[Sequence[object]] = list(zip(*rows, strict=True))
    data = dict(zip(names, columns, strict=True))
    for name in ("ex_date", "record_date", "pay_date"):
        data[name] = pd.to_datetime(pd.Series(data[name], dtype=object), utc=True)
    return frame(CORPORATE_ACTIONS, data, what="stored corporate actions")


# ---------------------------------------------------------------------------------------------
# Pure adjustment math


def adjustment_factors(actions: pd.DataFrame, closes: pd.DataFrame) -> pd.DataFrame:
    """Cumulative factors as steps per symbol, as ``market.adjustment_factors`` returns them.

    ``actions``: a CORPORATE_ACTIONS frame. ``closes``: raw bars (``symbol``, ``ts``, ``close``)
    of the sessions before the dividends' ex dates. Returns ``symbol``, ``valid_from`` (NaT = since
    the beginning), ``valid_until`` (an ex date), ``split_factor``, ``total_factor``: bars whose
    session date lies in [valid_from, valid_until) take those factors; later bars take 1.
    """
    columns = ["symbol", "valid_from", "valid_until", "split_factor", "total_factor"]
    if actions.empty:
        return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in zip(columns, _FACTOR_DTYPES, strict=True)})
    events = pd.DataFrame(
        {
            "symbol": actions["symbol"].astype(str).to_numpy(),
            "action": actions["action"].astype(str).to_numpy(),
            "ex_date": _utc_dates(actions["ex_date"]),
            "split_f": np.where(actions["action"] == "split", actions["old_rate"] / actions["new_rate"], 1.0),
            "amount": actions["amount"].to_numpy(dtype=float, na_value=np.nan),
        }
    )
    same_day_split = events[events["action"] == "split"].groupby(["symbol", "ex_date"])["split_f"].prod()
    events["close_prev"] = _close_before(events[["symbol", "ex_date"]], closes)
    keys = pd.MultiIndex.from_frame(events[["symbol", "ex_date"]])
    events["close_prev"] *= same_day_split.reindex(keys).fillna(1.0).to_numpy()
    usable = (events["action"] == "dividend") & (events["close_prev"] > 0) & (events["amount"] < events["close_prev"])
    events["dividend_f"] = np.where(usable, 1.0 - events["amount"] / events["close_prev"], 1.0)
    per_date = events.groupby(["symbol", "ex_date"], as_index=False)[["split_f", "dividend_f"]].prod()
    per_date = per_date.sort_values(["symbol", "ex_date"], ascending=[True, False])
    grouped = per_date.groupby("symbol", sort=False)
    per_date["split_factor"] = grouped["split_f"].cumprod()
    per_date["total_factor"] = (per_date["split_f"] * per_date["dividend_f"]).groupby(per_date["symbol"]).cumprod()
    per_date = per_date.sort_values(["symbol", "ex_date"]).reset_index(drop=True)
    per_date["valid_from"] = per_date.groupby("symbol")["ex_date"].shift(1)
    return per_date.rename(columns={"ex_date": "valid_until"})[columns]


_FACTOR_DTYPES = ("string[pyarrow]", "datetime64[ns, UTC]", "datetime64[ns, UTC]", "float64", "float64")


def apply_adjustment(bars: pd.DataFrame, factors: pd.DataFrame, adjustment: Adjustment) -> pd.DataFrame:
    """``bars`` (canonical BARS frame) with prices and volumes adjusted by ``factors``."""
    check_adjustment(adjustment)
    if adjustment == "raw" or bars.empty:
        return bars.copy()
    split, price = bar_factors(bars, factors, adjustment)
    adjusted = bars.copy()
    for column in ("open", "high", "low", "close", "vwap"):
        adjusted[column] = bars[column].to_numpy() * price
    adjusted["volume"] = np.round(bars["volume"].to_numpy() / split).astype(np.int64)
    return adjusted


def bar_factors(bars: pd.DataFrame, factors: pd.DataFrame, adjustment: Adjustment) -> tuple[np.ndarray, np.ndarray]:
    """The split factor (volumes are divided by it) and the price factor (prices are multiplied by
    it) of each row of ``bars`` (``symbol``, ``ts``), in row order: 1 where no later action applies,
    and everywhere for ``'raw'``. What :func:`apply_adjustment` applies, and what undoes it."""
    check_adjustment(adjustment)
    if adjustment == "raw" or bars.empty or factors.empty:
        return np.ones(len(bars)), np.ones(len(bars))
    days = pd.Series(session_date(bars["ts"]).to_numpy(), name="day")
    left = pd.DataFrame({"row": np.arange(len(bars)), "symbol": bars["symbol"].astype(str).to_numpy(), "day": days})
    right = factors.assign(symbol=factors["symbol"].astype(str), day=pd.DatetimeIndex(factors["valid_until"]))
    matched = pd.merge_asof(
        left.sort_values("day"),
        right[["symbol", "day", "split_factor", "total_factor"]].sort_values("day"),
        on="day",
        by="symbol",
        direction="forward",
        allow_exact_matches=False,  # an ex date's own session is already adjusted by the market
    ).sort_values("row")
    split = matched["split_factor"].fillna(1.0).to_numpy(dtype=np.float64)
    price = (matched["total_factor"] if adjustment == "all" else matched["split_factor"]).fillna(1.0)
    return split, price.to_numpy(dtype=np.float64)


def read_adjustment_factors(conn: psycopg.Connection, symbols: Sequence[str]) -> pd.DataFrame:
    """The factor steps of ``symbols`` as the hot store computes them (``market.adjustment_factors``,
    the frame :func:`adjustment_factors` gives): what ``market.adjusted_bars`` applies."""
    rows = conn.execute(
        "SELECT symbol, valid_from, valid_until, split_factor, total_factor FROM market.adjustment_factors(%s)",
        (list(symbols),),
    ).fetchall()
    columns = ["symbol", "valid_from", "valid_until", "split_factor", "total_factor"]
    data: list[Sequence[object]] = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    out = pd.DataFrame(dict(zip(columns, data, strict=True)))
    out["symbol"] = out["symbol"].astype(_FACTOR_DTYPES[0])
    for name in ("valid_from", "valid_until"):
        out[name] = pd.to_datetime(pd.Series(out[name], dtype=object), utc=True).astype(_FACTOR_DTYPES[1])
    return out.astype({"split_factor": "float64", "total_factor": "float64"})


def _utc_dates(values: pd.Series) -> np.ndarray:
    """Midnight-UTC timestamps (how the model stores dates) of a date-like column."""
    return utc_index(values).normalize().as_unit("ns").to_numpy()


def _close_before(keys: pd.DataFrame, closes: pd.DataFrame) -> np.ndarray:
    """For each (symbol, ex_date): the close of the last bar whose session date is before ex_date."""
    if closes.empty:
        return np.full(len(keys), np.nan)
    bars = pd.DataFrame(
        {
            "symbol": closes["symbol"].astype(str).to_numpy(),
            "day": session_date(closes["ts"]).dt.as_unit("ns").to_numpy(),
            "ts": closes["ts"].to_numpy(),
            "close": closes["close"].to_numpy(dtype=float),
        }
    ).sort_values(["day", "ts"])
    last_per_day = bars.drop_duplicates(["symbol", "day"], keep="last")
    probe = pd.DataFrame({"row": np.arange(len(keys)), "symbol": keys["symbol"].to_numpy(), "day": keys["ex_date"]})
    matched = pd.merge_asof(
        probe.sort_values("day"),
        last_per_day[["symbol", "day", "close"]],
        on="day",
        by="symbol",
        direction="backward",
        allow_exact_matches=False,
    ).sort_values("row")
    return matched["close"].to_numpy()
