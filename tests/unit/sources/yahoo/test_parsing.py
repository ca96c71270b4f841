from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
from loguru import logger

from core import model
from core.errors import PermanentSourceError
from sources.http import Request
from sources.yahoo import parse_chart_bars, parse_chart_events
from sources.yahoo.parsing import later_splits_context, parser_for, split_applied
from tests.support.payloads import JAN3_1430_UTC_S, yahoo_chart

DAY = 86_400


def test_daily_chart_bars_are_stamped_at_the_session_like_polygon_and_alpaca():
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY],
        {"open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5], "volume": [100, 200]},
        symbol="BRK-B",
    )
    bars = parse_chart_bars(chart, timeframe="1day")
    assert list(bars.columns) == list(model.BARS)
    assert bars["symbol"].tolist() == ["BRK.B", "BRK.B"]
    assert bars.loc[0, "ts"] == pd.Timestamp("2023-01-03T05:00:00Z")
    assert bars["volume"].tolist() == [100, 200]


def test_rows_yahoo_pads_with_nulls_are_dropped():
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + 60],
        {"open": [1.0, None], "high": [2.0, None], "low": [0.5, None], "close": [1.5, None], "volume": [100, None]},
    )
    assert len(parse_chart_bars(chart, timeframe="1min", later_splits=[])) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {
            "chart": {
                "result": None,
                "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
            }
        },
        {"chart": {"result": [], "error": None}},
        yahoo_chart(
            [JAN3_1430_UTC_S], {"open": [1.0, 2.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1]}
        ),
        yahoo_chart([JAN3_1430_UTC_S], {"open": ["x"], "high": ["x"], "low": ["x"], "close": ["x"], "volume": [1]})
        | {"broken": True},
        {"unexpected": 1},
    ],
    ids=["vendor-error", "empty-result", "length-mismatch", "all-unreadable", "no-chart"],
)
def test_malformed_charts_raise_a_typed_error_or_yield_no_bars(payload):
    try:
        bars = parse_chart_bars(payload)
    except PermanentSourceError:
        return
    assert len(bars) == 0  # unreadable prices are treated like Yahoo's null padding


def test_vendor_error_names_the_reason():
    with pytest.raises(PermanentSourceError, match="delisted"):
        parse_chart_bars({"chart": {"result": None, "error": {"code": "Not Found", "description": "maybe delisted"}}})


def test_chart_events_give_splits_and_dividends_on_their_new_york_date():
    events = {
        "dividends": {str(JAN3_1430_UTC_S): {"amount": 0.23, "date": JAN3_1430_UTC_S}},
        "splits": {
            str(JAN3_1430_UTC_S + DAY): {
                "date": JAN3_1430_UTC_S + DAY,
                "numerator": 4,
                "denominator": 1,
                "splitRatio": "4:1",
            }
        },
    }
    chart = yahoo_chart(
        [JAN3_1430_UTC_S], {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1]}, events
    )
    actions = parse_chart_events(chart, served_on="2023-01-05")
    assert actions["action"].tolist() == ["dividend", "split"]
    assert actions.loc[0, "ex_date"] == pd.Timestamp("2023-01-03T00:00:00Z")
    assert actions.loc[0, "amount"] == 0.92  # Yahoo's 0.23 is in post-split shares: raw cash is x 4
    assert (actions.loc[1, "new_rate"], actions.loc[1, "old_rate"]) == (4.0, 1.0)


def test_splits_after_a_bar_are_undone_so_the_bar_is_raw():
    # Jan 3 and Jan 4 as Yahoo serves them after a 2-for-1 split ex Jan 4 and a 1-for-10 ex Jan 5:
    # Jan 3 is adjusted by both (x 2 / 10 = / 5), Jan 4 by the reverse split only (x 10)
    split = {"date": JAN3_1430_UTC_S + DAY, "numerator": 2, "denominator": 1, "splitRatio": "2:1"}
    reverse = {"date": JAN3_1430_UTC_S + 2 * DAY, "numerator": 1, "denominator": 10, "splitRatio": "1:10"}
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY, JAN3_1430_UTC_S + 2 * DAY],
        {
            "open": [20.0, 200.0, 21.0],
            "high": [20.0, 200.0, 21.0],
            "low": [20.0, 200.0, 21.0],
            "close": [20.2, 200.5, 21.0],
            "volume": [500, 200, 30],
        },
        events={"splits": {"a": split, "b": reverse}},
    )
    bars = parse_chart_bars(chart, timeframe="1day")
    assert bars["close"].tolist() == [4.04, 20.05, 21.0]  # raw close = Yahoo's x 2/1 x 1/10, x 1/10, as is
    assert bars["volume"].tolist() == [2500, 2000, 30]


def test_minute_bars_before_a_split_in_the_chart_are_undone_too():
    split = {"date": JAN3_1430_UTC_S + DAY, "numerator": 4, "denominator": 1, "splitRatio": "4:1"}
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY],
        {"open": [1.25] * 2, "high": [1.25] * 2, "low": [1.25] * 2, "close": [1.25] * 2, "volume": [400, 400]},
        events={"splits": {"a": split}},
    )
    bars = parse_chart_bars(chart, timeframe="1min", later_splits=[])
    assert bars["close"].tolist() == [5.0, 1.25] and bars["volume"].tolist() == [100, 400]


def test_bars_outside_the_requested_range_are_left_out():
    chart = yahoo_chart(
        [JAN3_1430_UTC_S + i * DAY for i in range(3)],
        {"open": [1.0] * 3, "high": [1.0] * 3, "low": [1.0] * 3, "close": [1.0, 2.0, 3.0], "volume": [1] * 3},
    )
    bars = parse_chart_bars(chart, timeframe="1day", start="2023-01-04", end="2023-01-04T23:59:59Z")
    assert bars["close"].tolist() == [2.0]


MINUTES = {"open": [10.0] * 2, "high": [10.0] * 2, "low": [10.0] * 2, "close": [10.0, 10.5], "volume": [300, 400]}
JAN5_SPLIT = {"date": JAN3_1430_UTC_S + 2 * DAY, "numerator": 4, "denominator": 1, "splitRatio": "4:1"}
JAN9_SPLIT = {"date": JAN3_1430_UTC_S + 6 * DAY, "numerator": 3, "denominator": 2, "splitRatio": "3:2"}


def served_minutes(market_time: int | None = None):
    """Two Jan 3 minutes as Yahoo serves them later: split-adjusted, no split in their range's events."""
    chart = yahoo_chart([JAN3_1430_UTC_S, JAN3_1430_UTC_S + 60], dict(MINUTES))
    if market_time is not None:
        chart["chart"]["result"][0]["meta"]["regularMarketTime"] = market_time
    return chart


def test_minute_bars_served_after_a_later_split_are_raw_with_the_splits_of_the_daily_chart():
    daily = yahoo_chart([JAN3_1430_UTC_S], {k: v[:1] for k, v in MINUTES.items()}, {"splits": {"a": JAN5_SPLIT}})
    served = datetime(2023, 1, 6, 15, tzinfo=UTC)  # after the 4:1 split ex Jan 5
    context = later_splits_context(daily, served, served_minutes())

    bars = parse_chart_bars(served_minutes(), timeframe="1min", end="2023-01-03T23:59:59Z", **context)

    assert bars["close"].tolist() == [40.0, 42.0] and bars["volume"].tolist() == [75, 100]


def test_a_split_after_the_day_the_bars_were_served_is_not_undone():
    # the daily chart is asked right after the bars: a split ex after their Date was not applied to them
    daily = yahoo_chart(
        [JAN3_1430_UTC_S], {k: v[:1] for k, v in MINUTES.items()}, {"splits": {"a": JAN5_SPLIT, "b": JAN9_SPLIT}}
    )
    context = later_splits_context(daily, datetime(2023, 1, 6, 15, tzinfo=UTC), served_minutes())
    assert context["later_splits"] == [JAN5_SPLIT]
    # without a Date header, the New York date of meta.regularMarketTime stands for it
    late = later_splits_context(daily, None, served_minutes(market_time=JAN3_1430_UTC_S + 6 * DAY))
    assert late["later_splits"] == [JAN5_SPLIT, JAN9_SPLIT]


def test_minute_bars_whose_later_splits_are_unknown_are_refused_not_stored_as_raw():
    with pytest.raises(PermanentSourceError, match=r"split-adjusted up to the vendor.s today \(2023-01-06\).*refused"):
        parse_chart_bars(
            served_minutes(market_time=JAN3_1430_UTC_S + 3 * DAY), timeframe="1min", end="2023-01-03T23:59:59Z"
        )
    with pytest.raises(PermanentSourceError, match=r"no Date header and no meta\.regularMarketTime"):
        later_splits_context(yahoo_chart([], {}), None, served_minutes())


def test_minute_bars_served_on_their_own_last_day_need_no_later_splits():
    bars = parse_chart_bars(
        served_minutes(market_time=JAN3_1430_UTC_S + 6 * 3600), timeframe="1min", end="2023-01-03T23:59:59Z"
    )
    assert bars["close"].tolist() == [10.0, 10.5]


def test_dividends_are_raw_cash_per_share_before_a_later_split():
    # Yahoo lists a dividend paid before a 4:1 split at a quarter of its cash (AAPL 2020-08-07: 0.82 -> 0.205)
    events = {
        "dividends": {
            "a": {"amount": 0.205, "date": JAN3_1430_UTC_S},
            "b": {"amount": 0.22, "date": JAN3_1430_UTC_S + 2 * DAY},
            "c": {"amount": 0.23, "date": JAN3_1430_UTC_S + 6 * DAY},
        },
        "splits": {"a": JAN5_SPLIT, "b": JAN9_SPLIT},
    }
    chart = yahoo_chart([JAN3_1430_UTC_S], {k: v[:1] for k, v in MINUTES.items()}, events)

    actions = parse_chart_events(chart, served_on="2023-01-10")
    dividends = actions[actions["action"] == "dividend"]

    # before both splits x 4 x 1.5; on the 4:1 split's ex date already post-split (x 1.5); after both as is
    assert dividends["amount"].tolist() == pytest.approx([1.23, 0.33, 0.23])


def test_chart_events_keep_the_range_asked():
    events = {"dividends": {"a": {"amount": 0.2, "date": JAN3_1430_UTC_S}}, "splits": {"a": JAN5_SPLIT}}
    chart = yahoo_chart([JAN3_1430_UTC_S], {k: v[:1] for k, v in MINUTES.items()}, events)
    actions = parse_chart_events(chart, start="2023-01-01", end="2023-01-04T23:59:59Z", served_on="2023-01-06")
    assert actions["action"].tolist() == ["dividend"] and actions["amount"].tolist() == [0.8]


def test_an_announced_split_after_the_day_the_chart_was_served_is_not_undone():
    # a daily chart served Jan 12 listing a 2:1 split ex Jan 20: Yahoo has not applied it to its prices or dividends
    announced = {"date": JAN3_1430_UTC_S + 17 * DAY, "numerator": 2, "denominator": 1, "splitRatio": "2:1"}
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY],
        {"open": [5.0] * 2, "high": [5.0] * 2, "low": [5.0] * 2, "close": [5.0] * 2, "volume": [10, 10]},
        {"splits": {"a": announced}, "dividends": {"d": {"date": JAN3_1430_UTC_S + DAY, "amount": 0.5}}},
    )
    chart["chart"]["result"][0]["meta"]["regularMarketTime"] = JAN3_1430_UTC_S + 9 * DAY

    bars = parse_chart_bars(chart, timeframe="1day")
    actions = parse_chart_events(chart, start="2023-01-01", end="2023-01-10")

    assert bars["close"].tolist() == [5.0, 5.0] and bars["volume"].tolist() == [10, 10]
    assert actions["action"].tolist() == ["dividend"] and actions["amount"].tolist() == [0.5]


def test_a_split_on_or_before_the_day_the_chart_was_served_is_undone():
    split = {"date": JAN3_1430_UTC_S + 2 * DAY, "numerator": 2, "denominator": 1, "splitRatio": "2:1"}
    chart = yahoo_chart(
        [JAN3_1430_UTC_S],
        {"open": [5.0], "high": [5.0], "low": [5.0], "close": [5.0], "volume": [10]},
        {"splits": {"a": split}, "dividends": {"d": {"date": JAN3_1430_UTC_S, "amount": 0.5}}},
    )
    chart["chart"]["result"][0]["meta"]["regularMarketTime"] = JAN3_1430_UTC_S + 2 * DAY  # served on the ex date

    assert parse_chart_bars(chart, timeframe="1day")["close"].tolist() == [10.0]
    assert parse_chart_events(chart)["amount"].dropna().tolist() == [1.0]


# A chart that lists a split after its last bar, served with no Date header and no meta.regularMarketTime


def announced_split_chart(events_extra: dict | None = None):
    """Jan 3 and Jan 4 daily bars and a 2:1 split ex Jan 20, without a serving date."""
    announced = {"date": JAN3_1430_UTC_S + 17 * DAY, "numerator": 2, "denominator": 1, "splitRatio": "2:1"}
    return yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY],
        {"open": [5.0] * 2, "high": [5.0] * 2, "low": [5.0] * 2, "close": [5.0] * 2, "volume": [10, 10]},
        {"splits": {"a": announced}, **(events_extra or {})},
    )


def test_a_chart_without_a_serving_date_listing_a_split_after_its_last_bar_is_refused_not_guessed():
    # it may be an announced split Yahoo has not applied (undoing it would halve the prices) or one it has
    with pytest.raises(PermanentSourceError, match=r"AAPL.*ratio 2 ex 2023-01-20.*no serving date.*fetch the range"):
        parse_chart_bars(announced_split_chart(), timeframe="1day")
    dividend = {"dividends": {"d": {"date": JAN3_1430_UTC_S + DAY, "amount": 0.5}}}
    with pytest.raises(PermanentSourceError, match=r"no serving date"):
        parse_chart_events(announced_split_chart(dividend))


def test_a_split_after_the_last_bar_decides_nothing_without_a_dividend_before_it():
    actions = parse_chart_events(announced_split_chart())
    assert actions["action"].tolist() == ["split"] and actions["new_rate"].tolist() == [2.0]


def test_splits_up_to_the_last_bar_are_undone_without_a_serving_date():
    # no bar is served before its session: a chart with a Jan 4 bar was served on Jan 4 or later
    split = {"date": JAN3_1430_UTC_S + DAY, "numerator": 2, "denominator": 1, "splitRatio": "2:1"}
    chart = yahoo_chart(
        [JAN3_1430_UTC_S, JAN3_1430_UTC_S + DAY],
        {"open": [5.0, 5.1], "high": [5.0, 5.1], "low": [5.0, 5.1], "close": [5.0, 5.1], "volume": [10, 10]},
        {"splits": {"a": split}},
    )
    assert parse_chart_bars(chart, timeframe="1day")["close"].tolist() == [10.0, 5.1]


def test_minute_bars_without_a_serving_date_listing_a_split_after_them_are_refused():
    split = {"date": JAN3_1430_UTC_S + DAY, "numerator": 4, "denominator": 1, "splitRatio": "4:1"}
    chart = yahoo_chart([JAN3_1430_UTC_S, JAN3_1430_UTC_S + 60], dict(MINUTES), {"splits": {"a": split}})
    with pytest.raises(PermanentSourceError, match=r"ratio 4 ex 2023-01-04.*no serving date"):
        parse_chart_bars(chart, timeframe="1min", later_splits=[])


def test_the_date_the_page_was_served_comes_before_meta_regular_market_time():
    # served (HTTP Date) Jan 12 though meta says Jan 20, the announced split's ex date: it is not undone
    chart = announced_split_chart()
    chart["chart"]["result"][0]["meta"]["regularMarketTime"] = JAN3_1430_UTC_S + 17 * DAY
    request = Request("yahoo", "chart", "/v8/finance/chart/AAPL", context={"served_on": "2023-01-12"})

    assert parser_for(request)(chart)["close"].tolist() == [5.0, 5.0]
    assert parse_chart_bars(chart)["close"].tolist() == [10.0, 10.0]  # by meta: served on the ex date


# A split ex on the day the chart was served: AAPL's 4:1 of 2020-08-31 (raw close 499.23 on Aug 28,
# first raw open 127.58 on Aug 31), as Yahoo serves the daily chart that day, adjusted or not yet.
AUG27, AUG28, AUG31 = 1598535000, 1598621400, 1598880600
AAPL_SPLIT = {"date": AUG31, "numerator": 4, "denominator": 1, "splitRatio": "4:1"}


def aapl_chart(closes_before: list[float], open_after: float | None, dividend: float | None = None):
    stamps = [AUG27, AUG28] + ([AUG31] if open_after is not None else [])
    closes = closes_before + ([open_after + 1.0] if open_after is not None else [])
    opens = [c - 1.0 for c in closes_before] + ([open_after] if open_after is not None else [])
    events: dict = {"splits": {str(AUG31): AAPL_SPLIT}}
    if dividend is not None:
        events["dividends"] = {str(AUG27): {"amount": dividend, "date": AUG27}}
    chart = yahoo_chart(
        stamps, {"open": opens, "high": closes, "low": opens, "close": closes, "volume": [1000] * len(stamps)}, events
    )
    chart["chart"]["result"][0]["meta"]["regularMarketTime"] = AUG31 + 6 * 3600  # served on the ex date
    return chart


def series_of(chart) -> pd.DataFrame:
    result = chart["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    sessions = model.session_date(model.epoch_to_utc(result["timestamp"], "s"))
    return pd.DataFrame({"session": sessions, "open": quote["open"], "close": quote["close"]})


EX_AUG31 = pd.Timestamp("2020-08-31", tz="UTC")


def test_a_series_adjusted_across_the_ex_date_moves_by_a_gap_an_unadjusted_one_by_the_split():
    assert split_applied(series_of(aapl_chart([125.01, 124.81], 127.58)), EX_AUG31, 4.0) is True
    assert split_applied(series_of(aapl_chart([500.04, 499.23], 127.58)), EX_AUG31, 4.0) is False


def test_a_series_that_cannot_tell_says_so():
    assert split_applied(series_of(aapl_chart([125.01, 124.81], None)), EX_AUG31, 4.0) is None  # before the open
    assert split_applied(series_of(aapl_chart([250.0, 250.0], 127.58)), EX_AUG31, 4.0) is None  # near neither
    assert split_applied(series_of(aapl_chart([125.01, 124.81], 127.58)), EX_AUG31, 1.0) is None


def test_a_same_day_split_yahoo_has_applied_is_undone():
    bars = parse_chart_bars(aapl_chart([125.01, 124.81], 127.58, dividend=0.205), timeframe="1day")
    actions = parse_chart_events(aapl_chart([125.01, 124.81], 127.58, dividend=0.205))
    assert bars["close"].tolist() == pytest.approx([500.04, 499.24, 128.58])
    assert actions.loc[actions["action"] == "dividend", "amount"].tolist() == pytest.approx([0.82])


def test_a_same_day_split_the_late_vendor_has_not_applied_yet_is_not_undone():
    # prices (and dividends) still raw across the ex date: undoing the split would quadruple them
    bars = parse_chart_bars(aapl_chart([500.04, 499.23], 127.58, dividend=0.82), timeframe="1day")
    actions = parse_chart_events(aapl_chart([500.04, 499.23], 127.58, dividend=0.82))
    assert bars["close"].tolist() == pytest.approx([500.04, 499.23, 128.58])
    assert bars["volume"].tolist() == [1000] * 3
    assert actions.loc[actions["action"] == "dividend", "amount"].tolist() == pytest.approx([0.82])


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(str(message)), level="WARNING", format="{message}")
    yield seen
    logger.remove(sink)


def test_a_same_day_split_the_prices_cannot_tell_about_is_taken_as_applied_with_a_warning(warnings):
    bars = parse_chart_bars(aapl_chart([125.01, 124.81], None), timeframe="1day")  # served before the open
    assert bars["close"].tolist() == [500.04, 499.24]
    assert len(warnings) == 1
    assert "AAPL" in warnings[0] and "ratio 4 ex 2020-08-31" in warnings[0] and "assumed applied" in warnings[0]


def test_later_splits_leave_out_a_same_day_split_the_daily_chart_shows_unapplied(warnings):
    minutes = yahoo_chart(
        [AUG28 + 60 * 389], {"open": [499.0], "high": [499.5], "low": [498.9], "close": [499.23], "volume": [7]}
    )
    served = datetime(2020, 8, 31, 15, tzinfo=UTC)

    late = later_splits_context(aapl_chart([500.04, 499.23], 127.58), served, minutes)
    applied = later_splits_context(aapl_chart([125.01, 124.81], 127.58), served, minutes)
    unknown = later_splits_context(aapl_chart([125.01, 124.81], None), served, minutes)

    assert late == {"later_splits": [], "served_on": "2020-08-31"}
    assert applied["later_splits"] == unknown["later_splits"] == [AAPL_SPLIT]
    assert len(warnings) == 1 and "ratio 4 ex 2020-08-31" in warnings[0]
    assert parse_chart_bars(minutes, timeframe="1min", **late)["close"].tolist() == [499.23]
