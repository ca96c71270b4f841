"""Point-in-time ratio math and earnings features on small synthetic frames."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd
import pytest

from core import model
from features.fundamentals import (
    EARNINGS_FEATURE_NAMES,
    Ratios,
    earnings_bar_features,
    earnings_feature_series,
    earnings_features,
    ratios,
    split_factor,
    surprise,
    trailing_dividends,
)
from storage.fundamentals import PointInTime

QUARTER_ENDS = ("2023-03-31", "2023-06-30", "2023-09-30", "2023-12-31")


def statements(shares: float = 100.0, quarters: tuple[str, ...] = QUARTER_ENDS) -> pd.DataFrame:
    rows = []
    for i, end in enumerate(quarters):
        items = {"net_income_loss": 25.0, "operating_income_loss": 40.0, "depreciation_and_amortization": 10.0}
        items |= {"diluted_average_shares": shares, "equity": 1000.0 + i, "long_term_debt": 300.0, "cash": 100.0}
        for item, value in items.items():
            rows.append((end, f"Q{i + 1}", item, value))
    frame = pd.DataFrame(rows, columns=["period_end", "fiscal_period", "item", "value"])
    out = model.frame(
        model.FINANCIALS,
        {
            "symbol": "ACME",
            "period_start": None,
            "period_end": frame["period_end"],
            "filing_date": pd.to_datetime(frame["period_end"]) + pd.Timedelta(days=30),
            "fiscal_period": frame["fiscal_period"],
            "fiscal_year": "2023",
            "statement": "income_statement",
            "item": frame["item"],
            "value": frame["value"],
            "unit": "USD",
            "source": "polygon",
        },
        what="test",
    )
    out["restated"] = False
    return out


def actions(*events: tuple[str, str, float, float, float]) -> pd.DataFrame:
    return model.frame(
        model.CORPORATE_ACTIONS,
        {
            "symbol": ["ACME"] * len(events),
            "action": [e[0] for e in events],
            "ex_date": [e[1] for e in events],
            "new_rate": [e[2] for e in events],
            "old_rate": [e[3] for e in events],
            "amount": [e[4] for e in events],
            "currency": "USD",
            "source": "polygon",
        },
        what="test",
    )


def pit(close: float, day: str, acts: pd.DataFrame, frame: pd.DataFrame | None = None) -> PointInTime:
    closes = pd.DataFrame({"symbol": ["ACME"], "ts": [pd.Timestamp(day, tz="America/New_York")], "close": [close]})
    return PointInTime(
        date.fromisoformat(day),
        statements() if frame is None else frame,
        model.empty_frame(model.EARNINGS),
        closes,
        acts,
    )


def test_ratios_of_a_plain_year() -> None:
    r = ratios(pit(20.0, "2024-03-01", actions()), "ACME")
    assert r.eps_ttm == pytest.approx(1.0) and r.pe == pytest.approx(20.0)
    assert r.market_cap == pytest.approx(2000.0) and r.pb == pytest.approx(2000.0 / 1003.0)
    assert r.ebitda_ttm == pytest.approx(200.0) and r.ev_ebitda == pytest.approx((2000.0 + 300 - 100) / 200)
    assert r.split_factor == 1.0 and r.dividend_yield == 0.0


def test_a_split_after_the_period_changes_no_ratio() -> None:
    split = actions(("split", "2024-02-15", 2.0, 1.0, math.nan))
    before = ratios(pit(20.0, "2024-02-14", split), "ACME")
    after = ratios(pit(10.0, "2024-02-15", split), "ACME")  # the same company at half the price per share
    assert after.split_factor == 2.0 and after.shares == pytest.approx(200.0)
    assert after.pe == pytest.approx(before.pe) and after.market_cap == pytest.approx(before.market_cap)


SPLIT_20_FOR_1 = ("split", "2022-07-18", 20.0, 1.0, math.nan)


def ratios_after_the_split(shares: float, filed_days_after_period_end: int) -> Ratios:
    """GOOGL Q2 2022: the quarter ends 06-30 and a 20-for-1 split is ex 07-18; the price is 20 on
    08-01, after it. The filing counts ``shares`` (100 before the split, 2,000 after)."""
    filed = statements(shares=shares, quarters=("2021-09-30", "2021-12-31", "2022-03-31", "2022-06-30"))
    filed["filing_date"] = pd.to_datetime(filed["period_end"]) + pd.Timedelta(days=filed_days_after_period_end)
    return ratios(pit(20.0, "2022-08-01", actions(SPLIT_20_FOR_1), filed), "ACME")


def test_a_split_before_the_filing_is_not_counted_again() -> None:
    r = ratios_after_the_split(2000.0, filed_days_after_period_end=26)  # filed 07-26: post-split shares

    assert r.split_factor == 1.0 and r.shares == pytest.approx(2000.0)
    assert r.market_cap == pytest.approx(40_000.0) and r.eps_ttm == pytest.approx(0.05)
    assert r.pe == pytest.approx(400.0) and r.pb == pytest.approx(40_000.0 / 1003.0)


def test_a_split_after_the_filing_is_carried_forward() -> None:
    r = ratios_after_the_split(100.0, filed_days_after_period_end=10)  # filed 07-10: pre-split shares

    assert r.split_factor == 20.0 and r.shares == pytest.approx(2000.0) and r.pe == pytest.approx(400.0)


def test_dividends_before_a_split_count_in_post_split_shares() -> None:
    events = actions(
        ("dividend", "2023-06-01", math.nan, math.nan, 1.0),
        ("split", "2023-09-01", 2.0, 1.0, math.nan),
        ("dividend", "2023-12-01", math.nan, math.nan, 0.5),
        ("dividend", "2022-12-01", math.nan, math.nan, 9.0),  # more than a year before: not counted
    )
    assert trailing_dividends(events, "ACME", date(2024, 3, 1)) == pytest.approx(0.5 + 0.5)
    assert split_factor(events, "ACME", date(2023, 6, 30), date(2024, 3, 1)) == 2.0
    assert split_factor(events, "ACME", date(2023, 9, 1), date(2024, 3, 1)) == 1.0  # ex date itself excluded


def test_a_missing_quarter_or_a_loss_gives_no_pe() -> None:
    gap = statements(quarters=("2023-03-31", "2023-06-30", "2023-12-31", "2024-03-31"))
    assert math.isnan(ratios(pit(20.0, "2024-06-01", actions(), gap), "ACME").pe)
    losing = statements()
    losing.loc[losing["item"] == "net_income_loss", "value"] = -5.0
    assert math.isnan(ratios(pit(20.0, "2024-03-01", actions(), losing), "ACME").pe)


def calendar(*rows: tuple[str, str, float, float | None, str]) -> pd.DataFrame:
    return model.frame(
        model.EARNINGS,
        {
            "symbol": ["ACME"] * len(rows),
            "fiscal_year": "2024",
            "fiscal_period": [r[0] for r in rows],
            "report_date": [r[1] for r in rows],
            "time_of_day": [r[4] for r in rows],
            "eps_estimate": [r[2] for r in rows],
            "eps_actual": [r[3] for r in rows],
            "known_at": "2024-01-01T00:00:00Z",
            "source": "polygon",
        },
        what="test",
    )


def test_earnings_features_pick_the_last_report_and_the_next_one() -> None:
    known = calendar(("Q1", "2024-04-25", 1.0, 1.2, "amc"), ("Q2", "2024-07-24", 1.1, None, "bmo"))
    f = earnings_features(known, "ACME", date(2024, 5, 1))
    assert f.last_report_date == date(2024, 4, 25) and f.eps_surprise == pytest.approx(0.2)
    assert f.next_report_date == date(2024, 7, 24) and f.days_to_earnings == 84 and f.next_time_of_day == "bmo"
    on_the_day = earnings_features(known, "ACME", date(2024, 7, 24))
    assert on_the_day.days_to_earnings == 0  # reported later that day: still upcoming as known
    none_ahead = earnings_features(known.iloc[:1], "ACME", date(2024, 5, 1))
    assert none_ahead.next_report_date is None and math.isnan(none_ahead.days_to_earnings)


def test_surprise_needs_a_nonzero_estimate() -> None:
    assert surprise(-0.5, -1.0) == pytest.approx(0.5)
    assert math.isnan(surprise(1.0, 0.0)) and math.isnan(surprise(math.nan, 1.0))


def test_the_feature_series_sees_each_version_only_from_when_it_was_known() -> None:
    projected = calendar(("Q2", "2024-07-24", 1.1, None, "bmo"))
    projected["known_at"] = pd.Timestamp("2024-04-20T12:00:00Z")
    confirmed = calendar(("Q2", "2024-07-24", 1.1, 1.0, "bmo"))
    confirmed["known_at"] = pd.Timestamp("2024-07-24T13:05:00Z")
    versions = pd.concat([projected, confirmed], ignore_index=True)
    days = [date(2024, 4, 19), date(2024, 4, 20), date(2024, 7, 23), date(2024, 7, 24)]
    series = earnings_feature_series(versions, "ACME", days)

    def dates(column: str) -> list[str | None]:
        return [d if isinstance(d, str) else None for d in series[column]]

    assert dates("next_report_date") == [None, "2024-07-24", "2024-07-24", None]
    assert series["days_to_earnings"].tolist()[1:3] == [95, 1]
    assert dates("last_report_date") == [None, None, None, "2024-07-24"]
    assert series["eps_surprise"].iloc[3] == pytest.approx(-0.1 / 1.1)


def test_daily_bar_features_see_only_what_was_known_by_the_close() -> None:
    projected = calendar(("Q1", "2024-04-25", 1.0, 1.2, "amc"), ("Q2", "2024-07-24", 1.1, None, "amc"))
    confirmed = calendar(("Q2", "2024-07-24", 1.1, 1.0, "amc"))
    confirmed["known_at"] = pd.Timestamp("2024-07-24T20:30:00Z")  # 16:30 New York: after the close
    versions = pd.concat([projected, confirmed], ignore_index=True)
    days = [date(2023, 12, 29), date(2024, 7, 23), date(2024, 7, 24), date(2024, 7, 25)]
    ts = [pd.Timestamp(d, tz="America/New_York").tz_convert("UTC") for d in days]
    bars = pd.DataFrame({"symbol": "ACME", "ts": ts})
    long = earnings_bar_features(versions, bars)
    assert len(long) == len(days) * len(EARNINGS_FEATURE_NAMES)
    assert set(long["timeframe"]) == {"1day"} and set(long["ts"]) == set(ts)
    wide = long.pivot(index="ts", columns="name", values="value").sort_index()
    assert wide.iloc[0].isna().all()  # before the calendar was published: nothing known
    wide = wide.iloc[1:]

    assert wide["eps_surprise_last"].tolist()[:2] == pytest.approx([0.2, 0.2])  # Q1's, on the report day too
    assert wide["days_to_earnings"].tolist()[:2] == [1.0, 0.0]
    assert wide["days_since_earnings"].tolist()[:2] == [89.0, 90.0]
    after = wide.iloc[2]
    assert after["eps_surprise_last"] == pytest.approx(-0.1)
    assert after["eps_surprise_pct_last"] == pytest.approx(-0.1 / 1.1)
    assert after["days_since_earnings"] == 1.0 and math.isnan(after["days_to_earnings"])
    assert math.isnan(after["revenue_surprise_pct_last"])  # no revenue figures: unknown, not zero

    # As of the end of the calendar day the report day would already see the actuals.
    end_of_day = earnings_feature_series(versions, "ACME", days)
    assert end_of_day["eps_surprise"].iloc[2] == pytest.approx(-0.1 / 1.1)


def test_the_feature_series_wants_one_instant_per_day() -> None:
    with pytest.raises(ValueError, match="known_by has 1 instants for 2 days"):
        earnings_feature_series(calendar(), "ACME", [date(2024, 1, 2), date(2024, 1, 3)], [pd.Timestamp.now()])
