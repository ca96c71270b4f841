"""Option chains in the hot store (migration 0019): the contract reference, chain snapshots with
our IV and greeks, the rate curve, and their reads.

Both tables are written by the hot store's idempotent upsert (``storage.hot.upsert_frame``, merge
path: staging COPY, one ``INSERT .. ON CONFLICT .. WHERE IS DISTINCT FROM``), so a rerun of the same
snapshot rewrites nothing. ``write_option_chain`` writes contracts, quotes and the watermark in one
transaction: a chain is stored whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from core.calendar import nyse_sessions
from core.errors import StorageError
from storage.feature_tables import FEATURE_VALUES_TABLE
from storage.hot import Column, TableSpec, UpsertResult, upsert_frame
from storage.watermarks import advance_watermarks, watermarks_of

NEW_YORK = "America/New_York"
OPTION_DATASET = "option_snapshots"
RATE_SOURCE = "settings"  # market.rate_curve rows seeded from options.risk_free_rate

OPTION_CONTRACTS_TABLE = TableSpec(
    name="market.option_contracts",
    columns=(
        Column("contract", "text"),
        Column("underlying", "text"),
        Column("expiration", "date"),
        Column("strike", "float8"),
        Column("contract_type", "text"),
        Column("exercise_style", "text"),
        Column("shares_per_contract", "int8"),
        Column("source", "text"),
    ),
    key=("contract",),
    time_column=None,
)

_QUOTE_TYPES = {
    "contract": "text",
    "ts": "timestamptz",
    "underlying": "text",
    "expiration": "date",
    "strike": "float8",
    "contract_type": "text",
    "bid": "float8",
    "ask": "float8",
    "bid_size": "int8",
    "ask_size": "int8",
    "last_price": "float8",
    "quote_ts": "timestamptz",
    "volume": "int8",
    "open_interest": "int8",
    "underlying_price": "float8",
    "vendor_iv": "float8",
    "vendor_delta": "float8",
    "vendor_gamma": "float8",
    "vendor_theta": "float8",
    "vendor_vega": "float8",
    "rate": "float8",
    "dividend_yield": "float8",
    "iv": "float8",
    "delta": "float8",
    "gamma": "float8",
    "vega": "float8",
    "theta": "float8",
    "rho": "float8",
    "iv_reason": "int8",
    "quote_flags": "int8",
    "source": "text",
}
OPTION_QUOTES_TABLE = TableSpec(
    name="market.option_quotes",
    columns=tuple(Column(name, pg_type) for name, pg_type in _QUOTE_TYPES.items()),
    key=("contract", "ts"),
)
# The vendor's figures, renamed from the snapshot model's columns (core.model.OPTION_SNAPSHOTS).
_VENDOR_COLUMNS = {
    "implied_volatility": "vendor_iv",
    "delta": "vendor_delta",
    "gamma": "vendor_gamma",
    "theta": "vendor_theta",
    "vega": "vendor_vega",
}
_OURS = ("iv", "delta", "gamma", "vega", "theta", "rho")


def quote_rows(priced: pd.DataFrame) -> pd.DataFrame:
    """The ``market.option_quotes`` columns of a priced chain (features.option_chains.price_chain
    adds ours as ``our_<name>`` so the vendor's keep theirs)."""
    vendor = priced.rename(columns=_VENDOR_COLUMNS)
    ours = {name: priced[f"our_{name}"] for name in _OURS}
    return vendor.assign(**ours)[list(_QUOTE_TYPES)]


def write_option_chain(conn: psycopg.Connection, priced: pd.DataFrame) -> UpsertResult:
    """Upsert the contracts and quotes of priced chain rows and advance each underlying's
    watermark (newest snapshot) in one transaction; returns the quotes' counts."""
    if priced.empty:
        return UpsertResult()
    contracts = priced[[c.name for c in OPTION_CONTRACTS_TABLE.columns]].copy()
    contracts["shares_per_contract"] = contracts["shares_per_contract"].fillna(100)
    with conn.transaction():
        upsert_frame(conn, contracts, OPTION_CONTRACTS_TABLE, method="merge")
        result = upsert_frame(conn, quote_rows(priced), OPTION_QUOTES_TABLE, method="merge")
        marks = priced[["underlying", "ts", "source"]].rename(columns={"underlying": "symbol"})
        advance_watermarks(conn, watermarks_of(marks, dataset=OPTION_DATASET))
    return result


def write_option_quotes(conn: psycopg.Connection, priced: pd.DataFrame) -> UpsertResult:
    """Upsert the quotes of priced chain rows only (a recompute of stored snapshots: their
    contracts and watermark are stored already)."""
    if priced.empty:
        return UpsertResult()
    return upsert_frame(conn, quote_rows(priced), OPTION_QUOTES_TABLE, method="merge")


def read_stored_quotes(
    conn: psycopg.Connection, underlying: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """``underlying``'s stored quotes with ``start <= ts < end`` as a chain to price again: the
    snapshot model's columns (the vendor's figures under their names, :func:`quote_rows` inverted)
    with the snapshot model's dtypes, by ts and contract; ours are left out."""
    stored = [
        name for name in _QUOTE_TYPES if name not in (*_OURS, "rate", "dividend_yield", "iv_reason", "quote_flags")
    ]
    try:
        rows = conn.execute(
            f"SELECT {', '.join(stored)} FROM market.option_quotes"
            " WHERE underlying = %s AND ts >= %s AND ts < %s ORDER BY ts, contract",
            (underlying, start.to_pydatetime(), end.to_pydatetime()),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the stored option quotes of {underlying}: {exc}") from exc
    frame = pd.DataFrame(rows, columns=stored).rename(columns={v: k for k, v in _VENDOR_COLUMNS.items()})
    for name in ("ts", "quote_ts", "expiration"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    floats = ("strike", "bid", "ask", "last_price", "underlying_price", *_VENDOR_COLUMNS)
    for name in floats:
        frame[name] = frame[name].astype(np.float64)
    for name in ("bid_size", "ask_size", "volume", "open_interest"):
        frame[name] = frame[name].astype("Int64")
    return frame


def option_underlyings(conn: psycopg.Connection, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """Every underlying with stored quotes with ``start <= ts < end``."""
    rows = conn.execute(
        "SELECT DISTINCT underlying FROM market.option_quotes WHERE ts >= %s AND ts < %s ORDER BY 1",
        (start.to_pydatetime(), end.to_pydatetime()),
    ).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------------------------
# The rate curve


def read_rate_curve(conn: psycopg.Connection, as_of: date) -> pd.DataFrame:
    """The newest stored curve dated on or before ``as_of`` (columns tenor_days, rate, source);
    empty if none."""
    rows = conn.execute(
        """
        SELECT tenor_days, rate, source FROM market.rate_curve
        WHERE as_of = (SELECT max(as_of) FROM market.rate_curve WHERE as_of <= %s)
        ORDER BY tenor_days
        """,
        (as_of,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["tenor_days", "rate", "source"])


def rate_curve_for(conn: psycopg.Connection, as_of: date, flat_rate: float) -> pd.DataFrame:
    """The curve to price a snapshot of ``as_of`` with: the newest stored one, unless there is none
    or it is a flat point seeded from settings at another rate; then one flat point at
    ``flat_rate`` (``options.risk_free_rate``) is written for ``as_of`` first, so every stored IV
    names the rate it was computed with and a changed setting applies from that day on. A curve
    written by anything else (a rate vendor, by hand) is used as stored."""
    curve = read_rate_curve(conn, as_of)
    seeded = not curve.empty and (curve["source"] == RATE_SOURCE).all()
    if curve.empty or (seeded and not np.allclose(curve["rate"].to_numpy(float), flat_rate, rtol=0, atol=1e-12)):
        conn.execute(
            "INSERT INTO market.rate_curve (as_of, tenor_days, rate, source) VALUES (%s, 0, %s, %s)"
            " ON CONFLICT (as_of, tenor_days) DO UPDATE SET rate = EXCLUDED.rate, ingested_at = now()"
            " WHERE market.rate_curve.source = EXCLUDED.source",
            (as_of, flat_rate, RATE_SOURCE),
        )
        curve = read_rate_curve(conn, as_of)
    return curve


# ---------------------------------------------------------------------------------------------
# Reads

CHAIN_COLUMNS = (
    "contract",
    "ts",
    "underlying",
    "expiration",
    "strike",
    "contract_type",
    "bid",
    "ask",
    "last_price",
    "volume",
    "open_interest",
    "underlying_price",
    "vendor_iv",
    "iv",
    "delta",
    "gamma",
    "vega",
    "theta",
    "iv_reason",
    "quote_flags",
    "source",
)


def latest_snapshot_ts(conn: psycopg.Connection, underlying: str) -> pd.Timestamp | None:
    row = conn.execute("SELECT max(ts) FROM market.option_quotes WHERE underlying = %s", (underlying,)).fetchone()
    return pd.Timestamp(row[0]) if row and row[0] is not None else None


def read_option_chain(
    conn: psycopg.Connection,
    underlying: str,
    *,
    ts: pd.Timestamp | None = None,
    expirations: Sequence[date] | None = None,
) -> pd.DataFrame:
    """One stored snapshot of ``underlying``'s chain (the newest unless ``ts``), optionally only
    some expirations, ordered by expiration, strike, call before put."""
    at = ts if ts is not None else latest_snapshot_ts(conn, underlying)
    if at is None:
        return pd.DataFrame(columns=list(CHAIN_COLUMNS))
    try:
        rows = conn.execute(
            f"SELECT {', '.join(CHAIN_COLUMNS)} FROM market.option_quotes"
            " WHERE underlying = %s AND ts = %s AND (%s::date[] IS NULL OR expiration = ANY(%s::date[]))"
            " ORDER BY expiration, strike, contract_type",
            (underlying, at.to_pydatetime(), expirations, expirations),
        ).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the option chain of {underlying}: {exc}") from exc
    frame = pd.DataFrame(rows, columns=list(CHAIN_COLUMNS))
    for name in ("bid", "ask", "last_price", "underlying_price", "vendor_iv", "iv", "delta", "gamma", "vega", "theta"):
        frame[name] = frame[name].astype(np.float64)
    return frame


def stored_expirations(conn: psycopg.Connection, underlying: str, ts: pd.Timestamp) -> list[date]:
    rows = conn.execute(
        "SELECT DISTINCT expiration FROM market.option_quotes WHERE underlying = %s AND ts = %s ORDER BY 1",
        (underlying, ts.to_pydatetime()),
    ).fetchall()
    return [r[0] for r in rows]


def read_chain_features(conn: psycopg.Connection, underlying: str, ts: pd.Timestamp) -> dict[str, object]:
    """The snapshot's row of features.option_chain_features (db/routines/55_options.sql); {} if none."""
    cur = conn.execute(
        "SELECT * FROM features.option_chain_features WHERE underlying = %s AND ts = %s",
        (underlying, ts.to_pydatetime()),
    )
    row = cur.fetchone()
    if row is None:
        return {}
    names = [d.name for d in cur.description or []]
    return {
        name: (value.isoformat() if hasattr(value, "isoformat") else value)
        for name, value in zip(names, row, strict=True)
    }


def read_term_structure(conn: psycopg.Connection, underlying: str, ts: pd.Timestamp) -> pd.DataFrame:
    """The snapshot's rows of features.option_expiry_features, by expiration."""
    cur = conn.execute(
        "SELECT * FROM features.option_expiry_features WHERE underlying = %s AND ts = %s ORDER BY expiration",
        (underlying, ts.to_pydatetime()),
    )
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description or []])


# ---------------------------------------------------------------------------------------------
# Daily features in the feature store

OPTION_FEATURE_SET = "options1"  # features.bar_feature_values.feature_set of the chain features
DAILY_FEATURES = ("atm_iv_30d", "skew_25d", "put_call_volume_ratio", "put_call_oi_ratio")
# Per-snapshot rows: timeframe 15min, the options-snapshots deployment's cadence (the feature
# store's timeframes are checked: 1min, 5min, 15min, 1hour, 1day), ts the snapshot instant.
SNAPSHOT_TIMEFRAME = "15min"


def _feature_rows(underlying: str, timeframe: str, ts: pd.Timestamp, values: Mapping[str, object]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": underlying,
            "timeframe": timeframe,
            "ts": ts.tz_convert("UTC"),
            "feature_set": OPTION_FEATURE_SET,
            "name": list(values),
            "value": pd.to_numeric(pd.Series(list(values.values()), dtype=object), errors="coerce")
            .astype(np.float64)
            .to_numpy(),
        }
    )


def write_snapshot_features(
    conn: psycopg.Connection, underlying: str, ts: pd.Timestamp, tenor_ivs: Mapping[str, float]
) -> UpsertResult:
    """The chain features of ``underlying``'s snapshot at ``ts`` (:data:`DAILY_FEATURES` as the
    view computes them) and ``tenor_ivs`` (``atm_iv_<n>d`` of the term structure, NaN stored as
    NULL) in the feature store at timeframe :data:`SNAPSHOT_TIMEFRAME` and ``ts`` itself; nothing
    when the snapshot has no quotes. A rerun of the same snapshot rewrites nothing."""
    snapshot = pd.Timestamp(ts)
    features = read_chain_features(conn, underlying, snapshot)
    if not features:
        return UpsertResult()
    values = {**{name: features.get(name) for name in DAILY_FEATURES}, **tenor_ivs}
    frame = _feature_rows(underlying, SNAPSHOT_TIMEFRAME, snapshot, values)
    return upsert_frame(conn, frame, FEATURE_VALUES_TABLE, method="merge")


def write_daily_features(conn: psycopg.Connection, underlying: str, ts: pd.Timestamp) -> UpsertResult:
    """The chain features of ``underlying``'s snapshot at ``ts`` as its daily values in the feature
    store (features.bar_feature_values, timeframe 1day, ts midnight New York like daily bars,
    feature set :data:`OPTION_FEATURE_SET`), when it is the newest snapshot of its session taken
    by the session's close (13:00 on half days): the close is the day's value, what IV rank is
    computed on. A snapshot after the close (an evening ingest, after an after-the-close earnings
    report) or on a day without a session is no session's value: daily bars, earnings and news
    features of the day all stop at its close."""
    snapshot = pd.Timestamp(ts)
    day = snapshot.tz_convert(NEW_YORK).normalize()
    session = nyse_sessions(day.date(), day.date())
    if not len(session) or snapshot.value > int(session.close_ns[0]):
        return UpsertResult()
    close = pd.Timestamp(int(session.close_ns[0]), tz="UTC")
    newest = conn.execute(
        "SELECT max(ts) FROM market.option_quotes WHERE underlying = %s AND ts >= %s AND ts <= %s",
        (underlying, day.to_pydatetime(), close.to_pydatetime()),
    ).fetchone()
    if newest is None or newest[0] is None or pd.Timestamp(newest[0]) != snapshot:
        return UpsertResult()
    features = read_chain_features(conn, underlying, snapshot)
    if not features:
        return UpsertResult()
    frame = _feature_rows(underlying, "1day", day, {name: features.get(name) for name in DAILY_FEATURES})
    return upsert_frame(conn, frame, FEATURE_VALUES_TABLE, method="merge")
