"""Earnings features of daily bars in the feature store (feature set earnings1), through the real
stack: daily bars and the earnings calendar ingested from the sandbox over HTTP (the calendar once
with the sandbox's clock pinned before a report, so its projected version is stored, then as
known now), the ingest flow computing the features after storing the calendar. The stored rows
are checked against earnings_feature_series recomputed from the stored versions with each
session's 16:00 New York close, and the report day of an after-the-close report against what the
sandbox serves (its actuals reach only the next session)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pandas as pd
import psycopg
import pytest

from core.settings import Settings
from features.fundamentals import EARNINGS_FEATURE_NAMES, EARNINGS_FEATURE_SET, earnings_feature_series
from storage.fundamentals import read_earnings_versions
from tests.support.fundamentals import ingest, sandbox_results, wipe

SYMBOL = "FNDC"
NEW_YORK = ZoneInfo("America/New_York")
BARS = ("2023-01-01", "2023-12-29")
CALENDAR = ("2022-06-01", "2024-03-29")


def stored_features(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT ts, name, value, computed_at FROM features.bar_feature_values"
        " WHERE symbol = %s AND timeframe = '1day' AND feature_set = %s ORDER BY ts, name",
        (SYMBOL, EARNINGS_FEATURE_SET),
    ).fetchall()
    return pd.DataFrame(rows, columns=["ts", "name", "value", "computed_at"])


def surprise(report: dict) -> float:
    return (report["actual_eps"] - report["estimated_eps"]) / abs(report["estimated_eps"])


@pytest.fixture(scope="module")
def setting(stack: Settings) -> Iterator[dict]:
    """The bars and the calendar stored; the after-the-close report the checks are about."""
    from db.connect import database_connection

    with database_connection(stack, autocommit=True) as conn:
        wipe(conn)
        ingest(SYMBOL, "market_data", *BARS)
        calendar = sandbox_results(stack, "/benzinga/v1/earnings", ticker=SYMBOL, **{"date.gte": "2023-03-01"})
        late = [r for r in calendar if r["time"] >= "16:00:00" and r["date"] < "2023-12-01" and r["actual_eps"]]
        assert late, "the sandbox has an after-the-close report of 2023"
        report = late[0]
        previous = [r for r in calendar if r["date"] < report["date"] and r["actual_eps"] is not None]
        earlier = sandbox_results(stack, "/benzinga/v1/earnings", ticker=SYMBOL, **{"date.lte": report["date"]})
        day = date.fromisoformat(report["date"])
        clock = f"{stack.sandbox.base_url}/_sandbox/clock"
        try:  # the calendar as the vendor had it two days before the report: the report projected
            assert httpx.post(clock, json={"now": f"{day - timedelta(days=2)}T12:00"}).status_code == 200
            ingest(SYMBOL, "earnings", *CALENDAR)
        finally:
            httpx.delete(clock)
        ingest(SYMBOL, "earnings", *CALENDAR)
        last_before = (previous or [r for r in earlier if r["date"] < report["date"]])[-1]
        yield {"report": report, "previous": last_before}
        wipe(conn)


def test_stored_features_equal_the_series_as_known_at_each_close(setting: dict, conn: psycopg.Connection) -> None:
    stored = stored_features(conn)
    bars = [
        r[0]
        for r in conn.execute(
            "SELECT ts FROM market.bars WHERE symbol = %s AND timeframe = '1day' ORDER BY ts", (SYMBOL,)
        ).fetchall()
    ]
    assert len(bars) > 200 and set(stored["name"]) == set(EARNINGS_FEATURE_NAMES)
    assert sorted(set(stored["ts"])) == bars
    versions = read_earnings_versions(conn, [SYMBOL])
    report_day = date.fromisoformat(setting["report"]["date"])
    assert (versions["report_date"].dt.date == report_day).sum() == 2, "projected, then confirmed"

    days = [pd.Timestamp(ts).tz_convert(NEW_YORK).date() for ts in bars]
    closes = [datetime.combine(d, time(16), tzinfo=NEW_YORK) for d in days]
    series = earnings_feature_series(versions, SYMBOL, days, closes)
    wide = stored.pivot(index="ts", columns="name", values="value").sort_index()
    expected = {
        "eps_surprise_last": series["eps_actual"].astype(float) - series["eps_estimate"].astype(float),
        "eps_surprise_pct_last": series["eps_surprise"].astype(float),
        "revenue_surprise_pct_last": series["revenue_surprise"].astype(float),
        "days_to_earnings": series["days_to_earnings"].astype(float),
    }
    for name, values in expected.items():
        assert wide[name].to_numpy() == pytest.approx(values.to_numpy(), nan_ok=True, rel=1e-12), name
    # a report is known ahead only from its projected version (stored by the pinned ingest)
    assert wide["days_to_earnings"].notna().sum() > 0 and wide["eps_surprise_pct_last"].notna().sum() > 200


def test_a_report_known_after_the_close_reaches_only_the_next_session(setting: dict, conn: psycopg.Connection) -> None:
    report, previous = setting["report"], setting["previous"]
    report_day = date.fromisoformat(report["date"])
    known_at = conn.execute(
        "SELECT max(known_at) FROM market.earnings WHERE symbol = %s AND report_date = %s", (SYMBOL, report_day)
    ).fetchone()[0]
    assert known_at > datetime.combine(report_day, time(16), tzinfo=NEW_YORK), "the actuals came after the close"
    wide = stored_features(conn).pivot(index="ts", columns="name", values="value").sort_index()
    wide.index = [pd.Timestamp(ts).tz_convert(NEW_YORK).date() for ts in wide.index]
    sessions = list(wide.index)
    on_the_day = wide.loc[report_day]  # the session before the instant the actuals became known
    assert on_the_day["days_to_earnings"] == 0.0  # the projected version: still to come
    assert on_the_day["eps_surprise_pct_last"] == pytest.approx(surprise(previous), rel=1e-9)
    assert on_the_day["days_since_earnings"] == (report_day - date.fromisoformat(previous["date"])).days
    before = wide.loc[sessions[sessions.index(report_day) - 1]]
    assert before["days_to_earnings"] == (report_day - before.name).days
    after = wide.loc[sessions[sessions.index(report_day) + 1]]
    assert after["eps_surprise_pct_last"] == pytest.approx(surprise(report), rel=1e-9)
    assert after["eps_surprise_last"] == pytest.approx(report["actual_eps"] - report["estimated_eps"], rel=1e-9)
    assert after["days_since_earnings"] == (after.name - report_day).days
    assert math.isnan(after["days_to_earnings"]) or after["days_to_earnings"] > 0


def test_a_rerun_changes_no_feature_row(setting: dict, conn: psycopg.Connection) -> None:
    before = stored_features(conn)
    ingest(SYMBOL, "earnings", *CALENDAR)
    after = stored_features(conn)
    pd.testing.assert_frame_equal(before, after)  # computed_at too: no row was rewritten
