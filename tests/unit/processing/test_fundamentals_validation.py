"""Validation of filings and earnings rows: a reason per record naming the value; a filing is
rejected whole."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import model
from quality.fundamentals import check_earnings, check_financials


def filing(symbol: str = "ACME", end: str = "2024-03-31", filed: str = "2024-05-01", **items: float) -> pd.DataFrame:
    values = {"revenues": 100.0, "net_income_loss": 10.0, "diluted_average_shares": 50.0, **items}
    units = {"diluted_average_shares": "shares", "diluted_earnings_per_share": "USD / shares"}
    return model.frame(
        model.FINANCIALS,
        {
            "symbol": [symbol] * len(values),
            "period_start": ["2024-01-01"] * len(values),
            "period_end": [end] * len(values),
            "filing_date": [filed] * len(values),
            "fiscal_period": ["Q1"] * len(values),
            "fiscal_year": ["2024"] * len(values),
            "statement": ["income_statement"] * len(values),
            "item": list(values),
            "value": list(values.values()),
            "unit": [units.get(k, "USD") for k in values],
            "source": "polygon",
        },
        what="test filing",
    )


def test_a_clean_filing_is_accepted_whole() -> None:
    checked = check_financials(filing(), "ACME")
    assert len(checked.accepted) == 3 and checked.rejected.empty


def test_a_period_ending_after_its_filing_date_rejects_every_line_with_the_dates() -> None:
    good = filing(end="2024-03-31", filed="2024-05-01")
    bad = filing(end="2024-06-30", filed="2024-05-01")
    checked = check_financials(pd.concat([good, bad], ignore_index=True), "ACME")
    assert len(checked.accepted) == 3
    assert len(checked.rejected) == 3
    assert set(checked.rejected["reason"]) == {
        "period_after_filing: the period ends 2024-06-30 after its filing date 2024-05-01"
    }
    assert checked.reasons == {"period_after_filing": 3}


def test_one_negative_item_keeps_the_whole_filing_out_and_names_the_item() -> None:
    checked = check_financials(filing(revenues=-5.0), "ACME")
    assert checked.accepted.empty and len(checked.rejected) == 3
    assert (checked.rejected["reason"] == "negative_value: revenues = -5.0 (must be >= 0)").all()


def test_losses_may_be_negative_but_absurd_and_non_finite_values_may_not() -> None:
    assert check_financials(filing(net_income_loss=-1e9), "ACME").rejected.empty
    absurd = check_financials(filing(revenues=5e15), "ACME").rejected["reason"].iloc[0]
    assert absurd == "absurd_value: revenues = 5000000000000000.0 USD is beyond any company"
    eps = check_financials(filing(diluted_earnings_per_share=2e6), "ACME").rejected["reason"].iloc[0]
    assert "diluted_earnings_per_share = 2000000.0 USD / shares is beyond any company" in eps
    nan = check_financials(filing(revenues=np.nan), "ACME").rejected["reason"].iloc[0]
    assert nan == "absurd_value: revenues = nan is not a number"


def test_another_companys_filing_is_an_unknown_symbol() -> None:
    reason = check_financials(filing(symbol="OTHER"), "ACME").rejected["reason"].iloc[0]
    assert reason == "unknown_symbol: the record is OTHER's, not ACME's (asked for)"
    invalid = check_financials(filing(symbol="AC ME;"), "AC ME;").rejected["reason"].iloc[0]
    assert invalid.startswith("unknown_symbol: AC ME; is not a valid ticker")


def report(**values: object) -> pd.DataFrame:
    base: dict[str, object] = {
        "symbol": "ACME",
        "fiscal_year": "2024",
        "fiscal_period": "Q1",
        "report_date": "2024-04-25",
        "report_time": "16:05:00",
        "time_of_day": "amc",
        "date_status": "confirmed",
        "eps_estimate": 1.0,
        "eps_actual": 1.1,
        "revenue_estimate": 100.0,
        "revenue_actual": 101.0,
        "known_at": "2024-04-25T21:10:00Z",
        "source": "polygon",
        **values,
    }
    return model.frame(model.EARNINGS, {k: [v] for k, v in base.items()}, what="test report")


def test_earnings_rows_get_their_own_reasons() -> None:
    assert check_earnings(report(), "ACME").rejected.empty
    assert check_earnings(report(eps_actual=None), "ACME").rejected.empty  # not reported yet
    negative = check_earnings(report(revenue_actual=-1.0), "ACME").rejected["reason"].iloc[0]
    assert negative == "negative_value: revenue_actual = -1.0 (must be >= 0)"
    period = check_earnings(report(fiscal_period="Q5"), "ACME").rejected["reason"].iloc[0]
    assert period.startswith("unknown_period: fiscal period Q5 (allowed: FY, H1, H2, Q1, Q2, Q3, Q4)")
    missing = check_earnings(report(known_at=None), "ACME").rejected["reason"].iloc[0]
    assert missing.startswith("missing_date:")
