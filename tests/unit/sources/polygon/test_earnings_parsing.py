"""Benzinga's earnings calendar (Polygon /benzinga/v1/earnings) into the EARNINGS frame, and the
financials parser keeping another company's filing recognisable."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import PermanentSourceError
from sources.polygon.parsing import parse_earnings, parse_financials, time_of_day


def test_earnings_rows_parse_with_their_time_of_day_and_version_instant() -> None:
    payload = {
        "status": "OK",
        "results": [
            {
                "ticker": "brk-b",
                "date": "2024-04-25",
                "time": "16:05:00",
                "fiscal_period": "Q1",
                "fiscal_year": 2024,
                "estimated_eps": 1.25,
                "actual_eps": 1.31,
                "estimated_revenue": 1e9,
                "actual_revenue": 1.1e9,
                "date_status": "confirmed",
                "last_updated": "2024-04-25T21:10:00Z",
            },
            {
                "ticker": "ACME",
                "date": "2024-07-24",
                "time": "08:00:00",
                "fiscal_period": "Q2",
                "fiscal_year": 2024,
                "estimated_eps": 1.4,
                "actual_eps": None,
                "date_status": "projected",
                "last_updated": "2024-04-15T12:00:00Z",
            },
        ],
    }
    frame = parse_earnings(payload)
    assert list(frame["symbol"]) == ["BRK.B", "ACME"]
    assert list(frame["time_of_day"]) == ["amc", "bmo"]
    assert frame["fiscal_year"].tolist() == ["2024", "2024"]
    assert frame["report_date"].iloc[0] == pd.Timestamp("2024-04-25", tz="UTC")
    assert frame["known_at"].iloc[1] == pd.Timestamp("2024-04-15T12:00:00Z")
    assert pd.isna(frame["eps_actual"].iloc[1]) and pd.isna(frame["revenue_actual"].iloc[1])


def test_earnings_without_a_version_instant_are_refused() -> None:
    with pytest.raises(PermanentSourceError, match="last_updated"):
        parse_earnings({"results": [{"ticker": "A", "date": "2024-01-02", "fiscal_period": "Q1", "fiscal_year": 1}]})


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        ("07:59:00", "bmo"),
        ("09:29", "bmo"),
        ("09:30:00", "dmh"),
        ("15:59:59", "dmh"),
        ("16:00:00", "amc"),
        (None, "unknown"),
        ("soon", "unknown"),
    ],
)
def test_time_of_day(wall: object, expected: str) -> None:
    assert time_of_day(wall) == expected


def test_a_filing_of_another_company_keeps_its_own_ticker() -> None:
    filing = {
        "start_date": "2024-01-01",
        "end_date": "2024-03-31",
        "filing_date": "2024-05-01",
        "fiscal_period": "Q1",
        "fiscal_year": "2024",
        "tickers": ["OTHER"],
        "financials": {"income_statement": {"revenues": {"value": 1.0, "unit": "USD"}}},
    }
    assert parse_financials({"results": [filing]}, symbol="ACME")["symbol"].tolist() == ["OTHER"]
    assert parse_financials({"results": [{**filing, "tickers": ["ACME", "ACME.B"]}]}, symbol="acme")[
        "symbol"
    ].tolist() == ["ACME"]


def test_a_filing_keeps_its_acceptance_time_when_the_vendor_gives_one() -> None:
    filing = {
        "end_date": "2024-03-31",
        "filing_date": "2024-05-01",
        "fiscal_period": "Q1",
        "fiscal_year": "2024",
        "tickers": ["ACME"],
        "financials": {"income_statement": {"revenues": {"value": 1.0, "unit": "USD"}}},
    }
    timed = parse_financials({"results": [{**filing, "acceptance_datetime": "2024-05-01T20:30:00Z"}]}, symbol="ACME")
    untimed = parse_financials({"results": [filing]}, symbol="ACME")
    assert timed["accepted_at"].tolist() == [pd.Timestamp("2024-05-01T20:30:00Z")]  # 16:30 New York
    assert untimed["accepted_at"].isna().all()
