"""The feature store: features of stored bars in the hot store, and their export to the lake.

Standard features go into the wide ``features.bar_features`` (one column per
:data:`features.kernels.FEATURES`), plugin outputs into the long ``features.bar_feature_values``
(one row per bar and output name, so any plugin works without DDL); see
db/migrations/0009_features.sql. Both are written by the hot store's idempotent
:func:`storage.hot.upsert_frame` in one transaction: a rerun rewrites nothing and a
recomputation after a data correction rewrites exactly the rows whose values changed.

Features are computed from split- and dividend-adjusted bars (``adjustment="all"``), so a split
does not show up as a -50 % return, and from the first stored bar of each symbol, so a value does
not depend on where a run's range starts (an EMA or OBV over a shorter history would differ): any
two runs over the same bars write the same values, which is what makes reruns no-ops. "Stored"
includes the lake: given a :class:`~storage.router.StorageRouter` as ``history``, a refresh
reads the bars already tiered too, so tiering old bars does not change the features of the recent
ones (the hot store alone would restart every warm-up at its first bar).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql

from core.errors import StorageError
from features.builder import BAR_INPUTS, KEY_COLUMNS, FeatureSet
from features.kernels import FEATURES
from core.model import canonical_timeframe, to_utc
from storage.hot import Adjustment, Column, TableSpec, UpsertResult, read_bars, upsert_frame
from storage.lake import Lake

FEATURE_KEY = ("symbol", "timeframe", "ts", "feature_set")
_KEY_COLUMNS = (Column("symbol", "text"), Column("timeframe", "text"), Column("ts", "timestamptz"),
                Column("feature_set", "text"))  # fmt: skip
FEATURES_TABLE = TableSpec(
    name="features.bar_features",
    columns=(*_KEY_COLUMNS, *(Column(name, "float8") for name in FEATURES)),
    key=FEATURE_KEY,
    touched_at="computed_at",
)
FEATURE_VALUES_TABLE = TableSpec(
    name="features.bar_feature_values",
    columns=(*_KEY_COLUMNS, Column("name", "text"), Column("value", "float8")),
    key=(*FEATURE_KEY, "name"),
    touched_at="computed_at",
)
HISTORY_START = pd.Timestamp("1970-01-01", tz="UTC")  # features are computed from a symbol's first bar


# ---------------------------------------------------------------------------------------------
# Pure frame shaping


def plugin_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a ``FeatureSet.compute`` frame that plugins added (neither keys, inputs nor standard)."""
    reserved = {*KEY_COLUMNS, *BAR_INPUTS, *FEATURES}
    return [c for c in frame.columns if c not in reserved]


def feature_rows(frame: pd.DataFrame, feature_set_version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A computed frame as (wide standard rows, long plugin rows) in the two tables' shapes."""
    keys = frame[list(KEY_COLUMNS)].assign(feature_set=feature_set_version)
    wide = pd.concat([keys, frame[list(FEATURES)]], axis=1)
    extra = plugin_columns(frame)
    if not extra:
        return wide, pd.DataFrame(columns=FEATURE_VALUES_TABLE.column_names)
    n = len(frame)
    long = pd.DataFrame(
        {
            **{c: np.tile(keys[c].to_numpy(), len(extra)) for c in FEATURE_KEY},
            "name": np.repeat(np.array(extra, dtype=object), n),
            "value": np.concatenate([frame[c].to_numpy(np.float64) for c in extra]),
        }
    )
    return wide, long


# ---------------------------------------------------------------------------------------------
# Writing


def write_features(conn: psycopg.Connection, frame: pd.DataFrame, feature_set_version: str) -> UpsertResult:
    """Upsert a ``FeatureSet.compute`` frame: standard columns wide, plugin outputs long, in ONE
    transaction. The result counts both tables' rows."""
    wide, long = feature_rows(frame, feature_set_version)
    with conn.transaction():
        result = upsert_frame(conn, wide, FEATURES_TABLE)
        if len(long):
            result += upsert_frame(conn, long, FEATURE_VALUES_TABLE)
    return result


class BarHistory(Protocol):
    """Where a refresh reads bars from (a :class:`~storage.router.StorageRouter`: hot and lake)."""

    def read_bars(
        self,
        symbols: Sequence[str],
        start: object,
        end: object,
        timeframe: str = "1day",
        *,
        adjusted: bool | str = False,
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class FeatureRefresh:
    """What one refresh of a symbol batch did."""

    symbols: int
    bars: int  # bars in the requested range (= feature rows written or confirmed)
    feature_set: str
    inserted: int
    updated: int
    unchanged: int


def refresh_features(
    conn: psycopg.Connection,
    feature_set: FeatureSet,
    symbols: Sequence[str],
    timeframe: str,
    start: object,
    end: object,
    *,
    adjustment: Adjustment = "all",
    history: BarHistory | None = None,
) -> FeatureRefresh:
    """Compute and store the features of ``symbols``' bars with ``start <= ts < end``.

    Bars are read from each symbol's first stored bar (see the module docstring), through
    ``history`` when given (hot store and lake), else from the hot store on ``conn``; only rows
    inside the range are written."""
    lo = to_utc(start)
    if history is None:
        bars = read_bars(conn, symbols, HISTORY_START, end, timeframe, adjustment=adjustment)
    else:
        bars = history.read_bars(symbols, HISTORY_START, end, timeframe, adjusted=adjustment)
    computed = feature_set.compute(bars, canonical_timeframe(timeframe)).frame
    in_range = computed[computed["ts"] >= lo].reset_index(drop=True)
    result = write_features(conn, in_range, feature_set.version) if len(in_range) else UpsertResult()
    return FeatureRefresh(
        len(symbols), len(in_range), feature_set.version, result.inserted, result.updated, result.unchanged
    )


# ---------------------------------------------------------------------------------------------
# Reading


def symbols_with_bars(conn: psycopg.Connection, timeframe: str, start: object, end: object) -> list[str]:
    """Symbols with stored bars of ``timeframe`` and ``start <= ts < end``, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT symbol FROM market.bars WHERE timeframe = %s AND ts >= %s AND ts < %s ORDER BY 1",
        (canonical_timeframe(timeframe), to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()),
    ).fetchall()
    return [str(r[0]) for r in rows]


def latest_feature_set(
    conn: psycopg.Connection, symbols: Sequence[str], start: object, end: object, timeframe: str
) -> str | None:
    """The version most recently computed for these bars (None when nothing is stored)."""
    row = conn.execute(
        "SELECT feature_set FROM features.bar_features WHERE symbol = ANY(%s) AND timeframe = %s"
        " AND ts >= %s AND ts < %s ORDER BY computed_at DESC LIMIT 1",
        (list(symbols), canonical_timeframe(timeframe), to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()),
    ).fetchone()
    return None if row is None else str(row[0])


def read_features(
    conn: psycopg.Connection,
    symbols: Sequence[str],
    start: object,
    end: object,
    timeframe: str = "1day",
    feature_set: str | None = None,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Features of ``symbols`` with ``start <= ts < end``, wide, sorted by symbol and ts.

    Columns: symbol, timeframe, ts (UTC, exactly the bar's start), feature_set, then ``names``
    (default: every standard feature, then every stored plugin output). ``feature_set=None`` reads
    the most recently computed version, so one frame never mixes versions."""
    tf = canonical_timeframe(timeframe)
    lo, hi = to_utc(start), to_utc(end)
    version = feature_set or latest_feature_set(conn, symbols, lo, hi, tf)
    standard = [n for n in (names if names is not None else FEATURES) if n in FEATURES]
    where = "symbol = ANY(%s) AND timeframe = %s AND ts >= %s AND ts < %s AND feature_set = %s"
    args = (list(symbols), tf, lo.to_pydatetime(), hi.to_pydatetime(), version)
    try:
        rows = conn.execute(
            sql.SQL(
                "SELECT symbol, timeframe, ts, feature_set{} FROM features.bar_features WHERE {} ORDER BY symbol, ts"
            ).format(sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(n)) for n in standard), sql.SQL(where)),
            args,
        ).fetchall()
        extra = [n for n in names if n not in FEATURES] if names is not None else None
        name_filter = "" if extra is None else " AND name = ANY(%s)"
        values = conn.execute(
            f"SELECT symbol, ts, name, value FROM features.bar_feature_values WHERE {where}{name_filter}",
            args if extra is None else (*args, extra),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read {tf} features of {list(symbols)[:5]}: {exc}") from exc
    columns = ["symbol", "timeframe", "ts", "feature_set", *standard]
    wide = pd.DataFrame(rows, columns=columns)
    wide["ts"] = pd.to_datetime(wide["ts"], utc=True)
    for n in standard:
        wide[n] = wide[n].astype(np.float64)
    long = pd.DataFrame(values, columns=["symbol", "ts", "name", "value"])
    if extra is None:
        extra = sorted(long["name"].unique()) if len(long) else []
    elif len(wide):
        missing = sorted(set(extra) - set(long["name"].unique()))
        if missing:
            raise StorageError(
                f"feature(s) {missing} are not stored for {tf} bars of {list(symbols)[:5]} in feature set "
                f"{version!r}; standard features are {list(FEATURES)}"
            )
    if extra:
        long["ts"] = pd.to_datetime(long["ts"], utc=True)
        pivot = long.pivot(index=["symbol", "ts"], columns="name", values="value").astype(np.float64)
        wide = wide.merge(pivot.reindex(columns=extra).reset_index(), on=["symbol", "ts"], how="left")
    ordered = list(names) if names is not None else [*standard, *extra]
    return wide[["symbol", "timeframe", "ts", "feature_set", *ordered]]


# ---------------------------------------------------------------------------------------------
# Export


def export_key(key_prefix: str, timeframe: str, feature_set: str, symbol: str, start: object, end: object) -> str:
    """``<prefix>/<timeframe>/<feature_set>/<symbol>/<start>_<end>.parquet`` (dates of the range, UTC)."""
    lo, hi = to_utc(start), to_utc(end)
    span = f"{lo:%Y%m%dT%H%M%S}_{hi:%Y%m%dT%H%M%S}"
    return f"{key_prefix.strip('/')}/{timeframe}/{feature_set}/{symbol}/{span}.parquet"


def export_features(
    conn: psycopg.Connection,
    lake: Lake,
    symbols: Sequence[str],
    start: object,
    end: object,
    timeframe: str = "1day",
    names: Sequence[str] | None = None,
    key_prefix: str = "features",
    compression: str = "zstd",
    *,
    feature_set: str | None = None,
) -> list[str]:
    """Write :func:`read_features` to the lake as Parquet, ONE object per symbol (sorted by ts) under
    :func:`export_key`; returns the keys written (symbols without features get none).

    Per symbol rather than per month: a training job usually selects symbols, an object per symbol
    and range is self-describing, and a re-export of the same range overwrites the same key.
    Timestamps are exact (UTC, microseconds as stored); point-in-time joins are the caller's."""
    tf = canonical_timeframe(timeframe)
    version = feature_set or latest_feature_set(conn, symbols, start, end, tf)
    keys: list[str] = []
    if version is None:
        return keys
    for symbol in sorted(set(symbols)):
        frame = read_features(conn, [symbol], start, end, tf, version, names)
        if frame.empty:
            continue
        key = export_key(key_prefix, tf, version, symbol, start, end)
        lake.write_parquet(key, pa.Table.from_pandas(frame, preserve_index=False), compression)
        keys.append(key)
    return keys
