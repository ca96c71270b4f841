"""Each validation rule on tiny frames, strict vs lenient, and gap coverage against the calendar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import model
from core.calendar import nyse_sessions
from core.errors import DataQualityError
from quality.standardize import standardize_bars
from quality.validate import FLAGS, REASON, Rule, describe_flags, missing_bars, validate_bars
from tests.support.quality import bars, one, session_bars

OPEN_JUNE_3 = "2024-06-03 13:30"


def flags_of(frame: pd.DataFrame, **kwargs: object) -> list[int]:
    result = validate_bars(frame, mode="lenient", **kwargs)
    return result.accepted[FLAGS].tolist()


def test_a_clean_session_has_no_flags_and_no_gaps() -> None:
    result = validate_bars(session_bars("AAPL", "2024-06-03", "2024-06-03"))
    assert len(result.accepted) == 390 and len(result.rejected) == 0
    assert set(result.rule_counts.values()) == {0}
    assert result.gaps.empty and result.coverage["expected"].tolist() == [390]


@pytest.mark.parametrize(
    "fields",
    [{"high": 9.9}, {"low": 10.3}, {"low": 10.6, "high": 10.5}, {"open": 11.0}],
    ids=["high_below_open", "low_above_close", "low_above_high", "open_above_high"],
)
def test_ohlc_inconsistency(fields: dict) -> None:
    assert flags_of(one(OPEN_JUNE_3, **fields)) == [Rule.OHLC_INCONSISTENT]


@pytest.mark.parametrize("fields", [{"low": 0.0}, {"low": -1.0}, {"close": float("nan")}, {"vwap": 0.0}])
def test_non_positive_or_missing_prices(fields: dict) -> None:
    assert flags_of(one(OPEN_JUNE_3, **fields)) == [Rule.NON_POSITIVE_PRICE]


def test_missing_vwap_is_fine() -> None:
    assert flags_of(one(OPEN_JUNE_3, vwap=None)) == [0]


def test_negative_volume_or_trade_count() -> None:
    assert flags_of(one(OPEN_JUNE_3, volume=-1)) == [Rule.NEGATIVE_VOLUME]
    assert flags_of(one(OPEN_JUNE_3, trade_count=-3)) == [Rule.NEGATIVE_VOLUME]
    assert flags_of(one(OPEN_JUNE_3, volume=0)) == [0]


@pytest.mark.parametrize(
    ("ts", "timeframe", "expected"),
    [
        ("2024-06-03 13:30:30", "1min", Rule.MISALIGNED_TS),
        ("2024-06-03 13:31", "5min", Rule.MISALIGNED_TS),
        ("2024-06-03 13:35", "5min", 0),
        ("2024-06-03 13:45", "15min", 0),
        ("2024-06-03 19:59", "1min", 0),
        ("2024-06-03 20:00", "1min", Rule.OUTSIDE_SESSION),  # the close
        ("2024-06-03 12:00", "1min", Rule.OUTSIDE_SESSION),  # pre-market
        ("2024-07-04 15:00", "1min", Rule.OUTSIDE_SESSION),  # Independence Day
        ("2024-07-06 15:00", "1min", Rule.OUTSIDE_SESSION),  # Saturday
        ("2024-11-29 17:59", "1min", 0),  # last minute of the half day
        ("2024-11-29 18:00", "1min", Rule.OUTSIDE_SESSION),  # 13:00 ET on the half day
        ("2024-11-29 18:00", "1hour", Rule.OUTSIDE_SESSION),
        ("2024-11-29 17:00", "1hour", 0),  # 12:00 ET clock hour, the last of the half day
        ("2024-03-08 14:30", "1min", 0),  # 09:30 EST
        ("2024-03-11 13:30", "1min", 0),  # 09:30 EDT, first session after the DST change
        ("2024-03-11 13:29", "1min", Rule.OUTSIDE_SESSION),
        ("2024-03-08 13:30", "1min", Rule.OUTSIDE_SESSION),  # 08:30 EST
    ],
)
def test_intraday_timestamps_against_the_calendar(ts: str, timeframe: str, expected: int) -> None:
    assert flags_of(one(ts, timeframe=timeframe)) == [expected]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-06-03 04:00", 0),  # midnight New York (EDT)
        ("2024-03-08 05:00", 0),  # midnight New York (EST)
        ("2024-06-03 00:00", Rule.MISALIGNED_TS | Rule.OUTSIDE_SESSION),  # midnight UTC is 2024-06-02 20:00 ET
        ("2024-06-04 00:00", Rule.MISALIGNED_TS),  # 20:00 ET on session 2024-06-03
        ("2024-07-04 04:00", Rule.OUTSIDE_SESSION),  # holiday
        ("2024-11-29 05:00", 0),  # a half day is still a session
    ],
)
def test_daily_timestamps_are_midnight_new_york_of_a_session(ts: str, expected: int) -> None:
    assert flags_of(one(ts, timeframe="1day")) == [expected]


def test_session_anchored_hours_for_yahoo() -> None:
    frame = bars(
        [{"ts": "2024-06-03 13:30", "source": "yahoo"}, {"ts": "2024-06-03 14:00", "source": "polygon"}],
        timeframe="1hour",
    )
    assert flags_of(frame) == [0, 0]
    assert flags_of(frame, anchor="session") == [0, Rule.MISALIGNED_TS]


def test_duplicate_keys_with_different_values_strict_rejects_all() -> None:
    frame = standardize_bars(bars([{"ts": OPEN_JUNE_3, "close": 10.2}, {"ts": OPEN_JUNE_3, "close": 10.3}]))
    result = validate_bars(frame, mode="strict")
    assert result.accepted.empty
    assert result.rejected[REASON].tolist() == ["duplicate_conflict"] * 2


def test_duplicate_keys_lenient_keeps_the_last_received_flagged() -> None:
    frame = standardize_bars(bars([{"ts": OPEN_JUNE_3, "close": 10.2}, {"ts": OPEN_JUNE_3, "close": 10.3}]))
    result = validate_bars(frame, mode="lenient")
    assert result.accepted["close"].tolist() == [10.3]
    assert result.accepted[FLAGS].tolist() == [Rule.DUPLICATE_CONFLICT]
    assert result.rejected["close"].tolist() == [10.2]


def spiked(index: int, factor: float, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    frame = (session_bars("AAPL", "2024-06-03", "2024-06-03") if frame is None else frame).copy()
    for name in ("open", "high", "low", "close", "vwap"):
        frame.loc[index, name] = frame.loc[index, name] * factor
    return frame


def test_a_single_bad_print_is_an_outlier_and_its_neighbour_is_not() -> None:
    result = validate_bars(spiked(200, 1.2), mode="lenient")
    flagged = np.flatnonzero(result.accepted[FLAGS].to_numpy() & Rule.OUTLIER_RETURN)
    assert flagged.tolist() == [200]


def test_outlier_threshold_is_configurable() -> None:
    assert validate_bars(spiked(200, 1.2), outlier_threshold=1e6).rule_counts["outlier_return"] == 0


def test_a_lasting_jump_is_not_an_outlier() -> None:
    frame = session_bars("AAPL", "2024-06-03", "2024-06-03")
    for name in ("open", "high", "low", "close", "vwap"):
        frame.loc[200:, name] = frame.loc[200:, name] * 1.2
    assert validate_bars(frame).rule_counts["outlier_return"] == 0


def test_overnight_gaps_are_not_outliers() -> None:
    frame = session_bars("AAPL", "2024-06-03", "2024-06-04")
    frame.loc[390:, ["open", "high", "low", "close", "vwap"]] *= 1.3
    assert validate_bars(frame).rule_counts["outlier_return"] == 0


def test_a_one_tick_move_of_a_cheap_stock_is_not_an_outlier() -> None:
    frame = session_bars("F", "2024-06-03", "2024-06-03", price=3.0)
    frame[["open", "high", "low", "close", "vwap"]] = 3.05
    frame.loc[100, ["close", "high"]] = 3.06
    frame.loc[101, ["open", "high"]] = 3.06
    assert validate_bars(frame).rule_counts["outlier_return"] == 0


def test_split_ex_date_is_not_an_outlier_when_corporate_actions_are_given() -> None:
    frame = session_bars("AAPL", "2024-03-01", "2024-06-03", timeframe="1day")
    frame.loc[len(frame) - 1, ["open", "high", "low", "close", "vwap"]] /= 4  # 4-for-1 on the last day
    actions = model.frame(
        model.CORPORATE_ACTIONS,
        {
            "symbol": ["AAPL"],
            "action": ["split"],
            "ex_date": [pd.Timestamp("2024-06-03", tz="UTC")],
            "new_rate": [4.0],
            "old_rate": [1.0],
            "source": ["polygon"],
        },
        what="actions",
    )
    assert validate_bars(frame).rule_counts["outlier_return"] == 1
    assert validate_bars(frame, corporate_actions=actions).rule_counts["outlier_return"] == 0


def test_minutes_of_a_split_ex_date_are_not_outliers_when_corporate_actions_are_given() -> None:
    # raw minute bars of two weeks, the last day's a quarter of the others' after a 4-for-1 split
    frame = session_bars("AAPL", "2024-05-20", "2024-06-03")
    frame.loc[frame["ts"] >= pd.Timestamp("2024-06-03", tz="UTC"), ["open", "high", "low", "close", "vwap"]] /= 4
    actions = model.frame(
        model.CORPORATE_ACTIONS,
        {
            "symbol": ["AAPL"],
            "action": ["split"],
            "ex_date": [pd.Timestamp("2024-06-03", tz="UTC")],
            "new_rate": [4.0],
            "old_rate": [1.0],
            "source": ["polygon"],
        },
        what="actions",
    )
    assert validate_bars(frame, corporate_actions=actions).rule_counts["outlier_return"] == 0


def stale(count: int, volume: int = 0, step: float = 0.0) -> pd.DataFrame:
    stamps = pd.date_range(OPEN_JUNE_3, periods=count, freq="1min", tz="UTC")
    rows = [{"ts": ts, "close": 10.2 + i * step, "volume": volume, "high": 11.0} for i, ts in enumerate(stamps)]
    return bars(rows)


def test_stale_run_of_zero_volume_identical_closes() -> None:
    assert flags_of(stale(5)) == [Rule.STALE_PRICE] * 5
    assert flags_of(stale(4)) == [0] * 4
    assert flags_of(stale(4), stale_run=3) == [Rule.STALE_PRICE] * 4
    assert flags_of(stale(6, volume=10)) == [0] * 6
    assert flags_of(stale(6, step=0.01)) == [0] * 6


def test_reason_lists_every_failed_rule_and_flags_are_a_bitmask() -> None:
    result = validate_bars(one("2024-07-04 15:00", high=9.0, volume=-5))
    expected = Rule.OHLC_INCONSISTENT | Rule.NEGATIVE_VOLUME | Rule.OUTSIDE_SESSION
    assert result.rejected[FLAGS].tolist() == [int(expected)]
    assert result.rejected[REASON].tolist() == ["ohlc_inconsistent,negative_volume,outside_session"]
    assert describe_flags(np.array([0, 160])).tolist() == ["", "duplicate_conflict,stale_price"]


def test_strict_rejects_and_lenient_keeps_flagged_records() -> None:
    frame = bars([{"ts": OPEN_JUNE_3}, {"ts": "2024-06-03 13:31", "high": 1.0}])
    strict = validate_bars(frame, mode="strict")
    lenient = validate_bars(frame, mode="lenient")
    assert (len(strict.accepted), len(strict.rejected)) == (1, 1)
    assert (len(lenient.accepted), len(lenient.rejected)) == (2, 0)
    assert lenient.accepted[FLAGS].tolist() == [0, Rule.OHLC_INCONSISTENT]
    assert strict.rule_counts == lenient.rule_counts


def test_flags_do_not_depend_on_row_order() -> None:
    frame = pd.concat([spiked(100, 1.3), session_bars("MSFT", "2024-06-03", "2024-06-03", seed=2)], ignore_index=True)
    shuffled = frame.sample(frac=1.0, random_state=3)
    ordered = validate_bars(frame, mode="lenient").accepted
    merged = ordered.merge(validate_bars(shuffled, mode="lenient").accepted, on=["symbol", "ts"])
    assert ordered[FLAGS].sum() > 0 and len(merged) == len(frame)
    assert (merged[f"{FLAGS}_x"] == merged[f"{FLAGS}_y"]).all()


def test_gaps_are_reported_per_symbol_day_not_as_record_failures() -> None:
    frame = session_bars("AAPL", "2024-11-27", "2024-12-02")
    frame = frame.drop(index=range(400, 410)).reset_index(drop=True)  # ten minutes of the half day
    result = validate_bars(frame, start="2024-11-27", end="2024-12-02", symbols=["AAPL", "MSFT"])
    assert result.rejected.empty
    gaps = result.gaps
    assert gaps["symbol"].tolist() == ["MSFT", "MSFT", "MSFT", "AAPL"]
    assert gaps["missing"].tolist() == [390, 390, 210, 10]
    half_day = result.coverage[
        (result.coverage["symbol"] == "AAPL")
        & (result.coverage["session_date"] == pd.Timestamp("2024-11-29", tz="UTC"))
    ]
    assert half_day[["expected", "present", "missing"]].to_numpy().tolist() == [[210, 200, 10]]
    assert pd.Timestamp("2024-11-28", tz="UTC") not in set(result.coverage["session_date"])  # Thanksgiving


def test_bars_on_a_holiday_count_against_that_day() -> None:
    result = validate_bars(one("2024-07-04 15:00"))
    assert result.coverage[["expected", "off_grid"]].to_numpy().tolist() == [[0, 1]]


def test_empty_batch_with_a_requested_range_is_all_gaps() -> None:
    empty = model.empty_frame(model.BARS)
    result = validate_bars(empty, start="2024-07-03", end="2024-07-05", symbols=["AAPL"], timeframe="1day")
    assert result.gaps["missing"].tolist() == [1, 1]


def test_missing_bars_lists_the_stamps_to_refetch() -> None:
    frame = session_bars("AAPL", "2024-06-03", "2024-06-03").drop(index=[0, 389])
    lacking = missing_bars(frame, nyse_sessions("2024-06-03", "2024-06-03"), "1min", ["aapl", "MSFT"])
    assert (lacking["symbol"] == "MSFT").sum() == 390
    assert lacking.loc[lacking["symbol"] == "AAPL", "ts"].tolist() == [
        pd.Timestamp("2024-06-03 13:30", tz="UTC"),
        pd.Timestamp("2024-06-03 19:59", tz="UTC"),
    ]


def test_bad_mode_or_parameters_are_refused() -> None:
    with pytest.raises(DataQualityError, match="validation_mode"):
        validate_bars(one(OPEN_JUNE_3), mode="loose")  # type: ignore[arg-type]
    with pytest.raises(DataQualityError, match="stale_run"):
        validate_bars(one(OPEN_JUNE_3), stale_run=1)


def test_one_symbols_outliers_are_judged_alone_as_among_other_symbols() -> None:
    """A page of one symbol is judged with numpy statistics, several symbols with pandas' group-by:
    each symbol gets the same flags either way (a spike, a one-sided jump at a session end, a
    cheap stock's ticks, a quiet stretch)."""
    spikes = spiked(300, 0.8, spiked(120, 1.3, session_bars("AAPL", "2024-06-03", "2024-06-04")))
    spikes.loc[389, ["open", "high", "low", "close", "vwap"]] *= 1.5  # the first session's last bar
    cheap = session_bars("F", "2024-06-03", "2024-06-04", price=3.0)
    cheap.loc[50, ["close", "high"]] = cheap.loc[50, "close"] + 0.01
    alone = {
        symbol: validate_bars(frame, mode="lenient").accepted.set_index("ts")[FLAGS]
        for symbol, frame in (("AAPL", spikes), ("F", cheap))
    }
    together = validate_bars(pd.concat([spikes, cheap], ignore_index=True), mode="lenient").accepted
    for symbol, flags in alone.items():
        among = together[together["symbol"] == symbol].set_index("ts")[FLAGS]
        pd.testing.assert_series_equal(flags.sort_index(), among.sort_index())
    assert (alone["AAPL"].to_numpy() & Rule.OUTLIER_RETURN).astype(bool).sum() >= 2


@pytest.mark.parametrize("how", ["median", "mean", "count"])
def test_per_group_statistics_of_one_group_are_pandas_group_by(how: str) -> None:
    from quality.validate import _per_group

    rng = np.random.default_rng(7)
    for values in (
        rng.normal(size=391),
        np.where(rng.random(390) < 0.1, np.nan, rng.normal(size=390)),
        np.full(5, np.nan),
    ):
        group = np.zeros(len(values), dtype=np.int64)
        expected = pd.Series(values).groupby(group).transform(how).to_numpy(np.float64)
        np.testing.assert_allclose(_per_group(values, group, how), expected, rtol=1e-12, equal_nan=True)
