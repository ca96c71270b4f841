"""`marketpipe fundamentals SYMBOL --as-of DATE`: a company as it was known on a date.

The latest period filed by then (as filed then: a later restatement is not shown), the ratios
against the close of that day and the earnings features of the calendar as known then
(:mod:`features.fundamentals`).
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Annotated

import typer

from core.errors import RequestError
from marketpipe.cli.context import JsonReport, settings_of

app = typer.Typer()

_SHOWN = (
    ("revenues", "revenue"),
    ("net_income_loss", "net income"),
    ("diluted_earnings_per_share", "diluted EPS"),
    ("equity", "equity"),
    ("long_term_debt", "long-term debt"),
)


def _money(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(value) >= size:
            return f"{value / size:,.2f}{unit}"
    return f"{value:,.2f}"


def _num(value: float, digits: int = 2, suffix: str = "") -> str:
    return f"{value:,.{digits}f}{suffix}" if math.isfinite(value) else "n/a"


def _as_of_day(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise RequestError(f"--as-of {text!r} is not a date: use YYYY-MM-DD") from None


@app.command()
def fundamentals(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="ticker, e.g. AAPL or BRK.B")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD [default: today]")] = None,
    json_output: JsonReport = False,
) -> None:
    """Statements known at DATE's close (a filing from its acceptance time, or the first close
    after its filing date), P/E, P/B, EV/EBITDA and dividend yield against that close, the last
    earnings surprise and the days to the next report."""
    from features.fundamentals import earnings_features, ratios
    from pipeline.request import parse_symbols
    from storage.fundamentals import point_in_time
    from storage.router import StorageRouter

    settings = settings_of(ctx)
    (ticker,) = parse_symbols([symbol]) if symbol.strip() else parse_symbols(None)
    day = _as_of_day(as_of)
    with StorageRouter.connect(settings) as router:
        pit = point_in_time(router, [ticker], day)
    if pit.statements.empty and pit.earnings.empty:
        raise RequestError(
            f"nothing filed for {ticker} by {day}: ingest it first "
            f"(marketpipe ingest --symbols {ticker} --data-type fundamentals --start ... --end ...)"
        )
    valuation = ratios(pit, ticker)
    calendar = earnings_features(pit.earnings, ticker, day)
    latest = pit.statements[
        (pit.statements["period_end"].dt.date == valuation.period_end)
        & (pit.statements["fiscal_period"] == valuation.fiscal_period)
    ]
    items = dict(zip(latest["item"], latest["value"], strict=False))
    if json_output:
        report = {
            "symbol": ticker,
            "as_of": day.isoformat(),
            "latest_period": {k: (None if not math.isfinite(v) else v) for k, v in items.items()},
            "ratios": valuation.to_dict(),
            "earnings": calendar.to_dict(),
        }
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    typer.echo(f"{ticker} as of {day} (what had been filed and published by then)")
    if valuation.period_end is not None:
        note = ", restated" if valuation.restated else ""
        typer.echo(
            f"latest period: {valuation.fiscal_period} ended {valuation.period_end}, "
            f"filed {valuation.filing_date}{note}"
        )
        typer.echo("  " + "  ".join(f"{label} {_money(float(items.get(k, math.nan)))}" for k, label in _SHOWN))
    close_day = valuation.price_date or "no close stored"
    typer.echo(
        f"price {_num(valuation.price)} (close of {close_day}), shares {_money(valuation.shares)}"
        + (f" (x{valuation.split_factor:g} for splits since the period)" if valuation.split_factor != 1 else "")
        + f", market cap {_money(valuation.market_cap)}"
    )
    typer.echo(
        f"P/E {_num(valuation.pe)}  P/B {_num(valuation.pb)}  EV/EBITDA {_num(valuation.ev_ebitda)}  "
        f"dividend yield {_num(valuation.dividend_yield * 100, 2, '%')}"
    )
    if calendar.last_report_date is not None:
        typer.echo(
            f"last report {calendar.last_report_date} ({calendar.last_fiscal_period}): EPS {_num(calendar.eps_actual)} "
            f"vs {_num(calendar.eps_estimate)} expected, surprise {_num(calendar.eps_surprise * 100, 1, '%')}"
        )
    if calendar.next_report_date is not None:
        typer.echo(
            f"next report {calendar.next_report_date} ({calendar.next_time_of_day}), "
            f"in {calendar.days_to_earnings:.0f} days, EPS expected {_num(calendar.next_eps_estimate)}"
        )
    else:
        typer.echo("next report: none on the calendar as known then")
