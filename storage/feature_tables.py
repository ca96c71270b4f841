"""Features in the hot store: the two feature tables, their reads, writes and export to the lake.

Standard features go into the wide ``features.bar_features`` (one column per :data:`FEATURES`),
plugin outputs into the long ``features.bar_feature_values`` (one row per bar and output name, so
any plugin works without DDL); see db/migrations/0009_features.sql. Both are written by the hot
store's idempotent :func:`storage.hot.upsert_frame` in one transaction: a rerun rewrites nothing
and a recomputation after a data correction rewrites exactly the rows whose values changed.

This is the storage side only: what the tables hold and how they are read. Computing the values
(the kernels, the plugin API, a refresh from stored bars) is the ``features`` package's, which
writes through here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql

from core.errors import StorageError
from core.model import canonical_timeframe, to_utc
from storage.hot import BAR_KEY, Column, TableSpec, UpsertResult, upsert_frame
from storage.lake import Lake

# The standard features, in the kernels' output order: one float8 column each in the wide table.
FEATURES: tuple[str, ...] = (
    "ret",
    "log_ret",
    "volatility",
    "sma",
    "ema",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "bb_pctb",
    "atr",
    "obv",
    "vwap",
    "volume_z",
    "dist_high",
    "dist_low",
    "gap_pct",
)
FEATURE_KEY = (*BAR_KEY, "feature_set")
_KEY_COLUMNS = (
    Column("symbol", "text"),
    Column("timeframe", "text"),
    Column("ts", "timestamptz"),
    Column("feature_set", "text"),
)
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


# ---------------------------------------------------------------------------------------------
# Pure frame shaping


def plugin_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a feature frame that are plugin outputs (neither the bar's key nor standard)."""
    reserved = {*BAR_KEY, *FEATURES}
    return [c for c in frame.columns if c not in reserved]


def feature_rows(frame: pd.DataFrame, feature_set_version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A feature frame (the bar's key, every standard feature, then plugin outputs) as (wide
    standard rows, long plugin rows) in the two tables' shapes."""
    keys = frame[list(BAR_KEY)].assign(feature_set=feature_set_version)
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
    """Upsert a feature frame (see :func:`feature_rows`): standard columns wide, plugin outputs
    long, in ONE transaction. The result counts both tables' rows."""
    wide, long = feature_rows(frame, feature_set_version)
    with conn.transaction():
        result = upsert_frame(conn, wide, FEATURES_TABLE)
        if len(long):
            result += upsert_frame(conn, long, FEATURE_VALUES_TABLE)
    return result


# ---------------------------------------------------------------------------------------------
# Reading


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
