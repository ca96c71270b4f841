"""Financial statements and the earnings calendar in the hot store, read point in time.

Tables: ``market.financial_statements`` and ``market.earnings`` (migration 0020). Both keep every
version: a filing is a version of its period (a restatement is the period filed again, later),
an earnings row a version of its report as the vendor knew it at ``known_at``. Writers upsert on
the natural key including the version column, so a rerun changes nothing and a restatement never
overwrites the original. Readers ask ``market.financials_as_of`` / ``market.earnings_as_of``
(db/routines/80_fundamentals.sql): only what had been filed or known by the moment asked about.

:func:`point_in_time` gathers what the ratios of :mod:`features.fundamentals` need at a date:
those versions, the raw close of the last session on or before it (hot or tiered, through the
read router) and the corporate actions that put per-share figures and prices on one basis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import psycopg

from core.calendar import nyse_sessions
from core.model import EARNINGS, EXCHANGE_TZ, FINANCIALS, frame
from storage.corporate_actions import read_corporate_actions
from storage.feature_tables import FEATURE_VALUES_TABLE
from storage.hot import Column, TableSpec, UpsertResult, upsert_frame
from storage.router import StorageRouter
from storage.watermarks import advance_watermarks, watermarks_of

_TYPES = {
    "symbol": "text",
    "period_start": "date",
    "period_end": "date",
    "filing_date": "date",
    "accepted_at": "timestamptz",
    "fiscal_period": "text",
    "fiscal_year": "text",
    "statement": "text",
    "item": "text",
    "value": "float8",
    "unit": "text",
    "source": "text",
    "report_date": "date",
    "report_time": "text",
    "time_of_day": "text",
    "date_status": "text",
    "eps_estimate": "float8",
    "eps_actual": "float8",
    "revenue_estimate": "float8",
    "revenue_actual": "float8",
    "known_at": "timestamptz",
}
FINANCIAL_STATEMENTS_TABLE = TableSpec(
    name="market.financial_statements",
    columns=tuple(Column(name, _TYPES[name]) for name in FINANCIALS),
    key=("symbol", "fiscal_period", "period_end", "statement", "item", "source", "filing_date"),
    time_column="filing_date",
    kept_when_null=("accepted_at",),  # Polygon does not always send acceptance_datetime
)
EARNINGS_TABLE = TableSpec(
    name="market.earnings",
    columns=tuple(Column(name, _TYPES[name]) for name in EARNINGS),
    key=("symbol", "fiscal_year", "fiscal_period", "source", "known_at"),
    time_column="known_at",
)
FINANCIALS_DATASET = "financials"  # the watermark dataset of filings (newest filing date)


def write_financials(conn: psycopg.Connection, statements: pd.DataFrame) -> UpsertResult:
    """Upsert validated line items and advance each symbol's filings watermark, together."""
    with conn.transaction():
        result = upsert_frame(conn, statements, FINANCIAL_STATEMENTS_TABLE)
        advance_watermarks(conn, watermarks_of(statements, dataset=FINANCIALS_DATASET, ts_column="filing_date"))
    return result


def write_earnings(conn: psycopg.Connection, reports: pd.DataFrame) -> UpsertResult:
    """Upsert validated earnings versions (no watermark: every run asks its window again)."""
    return upsert_frame(conn, reports, EARNINGS_TABLE)


def write_earnings_features(conn: psycopg.Connection, long: pd.DataFrame, feature_set: str) -> UpsertResult:
    """Upsert long earnings feature rows (symbol, timeframe, ts, name, value) into the feature
    store's ``features.bar_feature_values`` under ``feature_set`` (a rerun changes nothing)."""
    if long.empty:
        return UpsertResult()
    frame = long.assign(feature_set=feature_set)[list(FEATURE_VALUES_TABLE.column_names)]
    return upsert_frame(conn, frame, FEATURE_VALUES_TABLE, method="merge")


def _frame_of(rows: list[tuple[object, ...]], names: Sequence[str]) -> pd.DataFrame:
    columns: list[Sequence[object]] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return pd.DataFrame({name: pd.Series(list(col), dtype=object) for name, col in zip(names, columns, strict=True)})


def read_financials_as_of(conn: psycopg.Connection, symbols: Sequence[str], as_of: datetime | date) -> pd.DataFrame:
    """Every line item of the latest version of each period known at the instant ``as_of`` (a date:
    the end of that New York day), in the FINANCIALS frame plus ``restated`` (this version replaced
    an earlier filing). A filing is known from its acceptance time, or, when the vendor gave none,
    from the first session close after its filing date (``market.financials_as_of``)."""
    at = as_of if isinstance(as_of, datetime) else end_of_day(as_of)
    names = [*FINANCIALS, "restated"]
    rows = conn.execute(
        f"SELECT {', '.join(names)} FROM market.financials_as_of(%s, %s)", (list(symbols), at)
    ).fetchall()
    raw = _frame_of(rows, names)
    for name in ("period_start", "period_end", "filing_date", "accepted_at"):
        raw[name] = pd.to_datetime(raw[name], utc=True)
    out = frame(FINANCIALS, {name: raw[name] for name in FINANCIALS}, what="stored financials")
    out["restated"] = raw["restated"].astype(bool).to_numpy()
    return out


def read_earnings_as_of(conn: psycopg.Connection, symbols: Sequence[str], as_of: datetime) -> pd.DataFrame:
    """Each report of the calendar as known at the instant ``as_of``: its latest version by then."""
    rows = conn.execute(
        f"SELECT {', '.join(EARNINGS)} FROM market.earnings_as_of(%s, %s) ORDER BY symbol, report_date",
        (list(symbols), as_of),
    ).fetchall()
    return _earnings_frame(rows)


def read_earnings_versions(conn: psycopg.Connection, symbols: Sequence[str]) -> pd.DataFrame:
    """Every stored version of the calendar of ``symbols`` (for point-in-time series)."""
    rows = conn.execute(
        f"SELECT {', '.join(EARNINGS)} FROM market.earnings WHERE symbol = ANY(%s) ORDER BY symbol, known_at",
        (list(symbols),),
    ).fetchall()
    return _earnings_frame(rows)


def _earnings_frame(rows: list[tuple[object, ...]]) -> pd.DataFrame:
    raw = _frame_of(rows, list(EARNINGS))
    raw["report_date"] = pd.to_datetime(raw["report_date"], utc=True)
    raw["known_at"] = pd.to_datetime(raw["known_at"], utc=True)
    return frame(EARNINGS, {name: raw[name] for name in EARNINGS}, what="stored earnings")


def end_of_day(day: date) -> datetime:
    """The last instant of a New York date, in UTC: what "as of that day" means for the calendar."""
    local = pd.Timestamp(datetime.combine(day + timedelta(days=1), time()), tz=EXCHANGE_TZ)
    return (local - pd.Timedelta(microseconds=1)).tz_convert(UTC).to_pydatetime()


@dataclass(frozen=True)
class PointInTime:
    """What was known about some symbols at the end of ``as_of``: statements known at the close of
    the last session on or before it (see :func:`close_of`), the calendar as known then, the raw
    close of that session, and every stored corporate action (the ratios take only those up to
    ``as_of``)."""

    as_of: date
    statements: pd.DataFrame
    earnings: pd.DataFrame
    closes: pd.DataFrame  # symbol, ts (session midnight New York, UTC), close (raw)
    actions: pd.DataFrame


def close_of(as_of: date) -> datetime:
    """The close ``as_of`` stands for: that of the last session on or before it (13:00 on half
    days), in UTC. The statements a ratio of ``as_of`` uses are those known by then, the price its
    close."""
    sessions = nyse_sessions(as_of - timedelta(days=14), as_of)
    if not len(sessions):
        return end_of_day(as_of)
    return pd.Timestamp(int(sessions.close_ns[-1]), unit="ns", tz=UTC).to_pydatetime()


def point_in_time(router: StorageRouter, symbols: Sequence[str], as_of: date, lookback_days: int = 14) -> PointInTime:
    """Read a :class:`PointInTime` (closes from the hot store or the lake, whichever holds them;
    statements known at that close, see :func:`close_of`)."""
    conn = router.conn
    start = pd.Timestamp(as_of - timedelta(days=lookback_days), tz=EXCHANGE_TZ)
    end = pd.Timestamp(as_of + timedelta(days=1), tz=EXCHANGE_TZ)
    bars = router.read_raw_bars(list(symbols), start, end, "1day")
    closes = bars.sort_values(["symbol", "ts"]).groupby("symbol", observed=True).tail(1)[["symbol", "ts", "close"]]
    return PointInTime(
        as_of=as_of,
        statements=read_financials_as_of(conn, symbols, close_of(as_of)),
        earnings=read_earnings_as_of(conn, symbols, end_of_day(as_of)),
        closes=closes.reset_index(drop=True),
        actions=read_corporate_actions(conn, list(symbols)),
    )
