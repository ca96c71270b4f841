"""streaming.windows: trades -> final and provisional bars, lateness, duplicates, cancels, corrections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigurationError
from core.model import BARS, TRADES, empty_frame, frame
from streaming import kernels
from streaming.windows import BarWindows, WindowOutput, condition_flags

T0 = pd.Timestamp("2024-06-03 13:30:00", tz="UTC")  # 09:30 New York
KEY = ["symbol", "timeframe", "ts"]


def trades(*rows: tuple[Any, ...], source: str = "alpaca", tape: str = "A") -> pd.DataFrame:
    """Rows of (symbol, seconds after T0, price, size, trade_id[, exchange[, conditions]])."""
    full = [(*r, "N", "@")[:7] if len(r) == 5 else (*r, "@")[:7] for r in rows]
    cols = list(zip(*full, strict=True)) if full else [[]] * 7
    return frame(
        TRADES,
        {
            "symbol": list(cols[0]),
            "ts": [T0 + pd.Timedelta(seconds=s) for s in cols[1]],
            "price": list(cols[2]),
            "size": list(cols[3]),
            "trade_id": list(cols[4]),
            "exchange": list(cols[5]),
            "conditions": list(cols[6]),
            "tape": tape,
            "source": source,
        },
        what="test trades",
    )


def cancels(*rows: tuple[str, str, str | None]) -> pd.DataFrame:
    """(symbol, trade_id, exchange or None)."""
    return pd.DataFrame(
        {
            "symbol": pd.Series([r[0] for r in rows], dtype="string[pyarrow]"),
            "ts": T0,
            "exchange": pd.Series([r[2] for r in rows], dtype="string[pyarrow]"),
            "trade_id": pd.Series([r[1] for r in rows], dtype="string[pyarrow]"),
            "action": "C",
        }
    )


def corrections(*rows: tuple[str, str, float, int, str | None]) -> pd.DataFrame:
    """(symbol, original trade_id, corrected price, corrected size, corrected trade_id or None)."""
    return pd.DataFrame(
        {
            "symbol": pd.Series([r[0] for r in rows], dtype="string[pyarrow]"),
            "ts": T0,
            "exchange": pd.Series(["N"] * len(rows), dtype="string[pyarrow]"),
            "original_trade_id": pd.Series([r[1] for r in rows], dtype="string[pyarrow]"),
            "corrected_trade_id": pd.Series([r[4] for r in rows], dtype="string[pyarrow]"),
            "corrected_price": [r[2] for r in rows],
            "corrected_size": [r[3] for r in rows],
            "corrected_conditions": pd.Series(["@"] * len(rows), dtype="string[pyarrow]"),
            "source": "alpaca",
        }
    )


def one(bars: pd.DataFrame, symbol: str = "AAA", timeframe: str = "1min", second: int = 0) -> pd.Series:
    hit = bars[
        (bars["symbol"] == symbol)
        & (bars["timeframe"] == timeframe)
        & (bars["ts"] == T0 + pd.Timedelta(seconds=second))
    ]
    assert len(hit) == 1, f"expected one {symbol} {timeframe} bar at +{second}s, got\n{bars}"
    return hit.iloc[0]


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


class Collected:
    """The bars a writer would hold after storing each output: the latest final version per key."""

    def __init__(self) -> None:
        self.final = pd.DataFrame(columns=list(BARS))

    def take(self, out: WindowOutput) -> WindowOutput:
        parts = [p for p in (self.final, out.final) if not p.empty]
        merged = pd.concat(parts, ignore_index=True) if parts else self.final
        merged = merged.drop_duplicates(KEY, keep="last")
        if not out.removed.empty:
            gone = pd.MultiIndex.from_frame(out.removed[KEY])
            merged = merged[~pd.MultiIndex.from_frame(merged[KEY]).isin(gone)]
        self.final = merged.sort_values(KEY, ignore_index=True)
        return out


# ---------------------------------------------------------------------------------------------
# Bars of one window


def test_open_and_close_are_first_and_last_by_time_then_arrival_whatever_the_order() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(
        trades(
            ("AAA", 30, 12.0, 10, "3"),
            ("AAA", 5, 10.0, 10, "1"),
            ("AAA", 50, 9.0, 10, "4"),
            ("AAA", 5, 11.0, 30, "2"),  # same time as trade 1, arrived after it
            ("AAA", 50, 10.5, 40, "5"),  # same time as trade 4, arrived after it: the close
        )
    )
    bar = one(windows.flush().final)
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (10.0, 12.0, 9.0, 10.5)
    assert bar["volume"] == 100 and bar["trade_count"] == 5
    assert bar["vwap"] == pytest.approx((100 + 330 + 120 + 90 + 420) / 100)
    assert bar["source"] == "stream"


def test_an_out_of_order_trade_within_the_lateness_is_an_ordinary_trade() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("AAA", 61, 11.0, 1, "2")))
    assert windows.advance().final.empty  # the clock is 13:31:01, the minute closes at 13:31:02
    windows.add_trades(trades(("AAA", 59, 8.0, 5, "3")))
    out = windows.advance(at(62))
    bar = one(out.final)
    assert (bar["low"], bar["close"], bar["volume"]) == (8.0, 8.0, 6)
    assert out.late_trades == 0 and out.corrected_bars == 0


def test_a_late_trade_within_the_horizon_re_emits_the_final_bar_corrected() -> None:
    windows = BarWindows(60, 2, correction_horizon_s=30)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("AAA", 63, 11.0, 1, "2")))
    first = one(windows.advance().final)
    assert first["close"] == 10.0
    windows.add_trades(trades(("AAA", 59, 12.0, 4, "3")))
    out = windows.advance()
    corrected = one(out.final)
    assert (corrected["high"], corrected["close"], corrected["volume"], corrected["trade_count"]) == (12.0, 12.0, 5, 2)
    assert out.late_trades == 1 and out.corrected_bars == 1 and out.dropped_late == 0
    assert out.provisional.empty  # the open minute did not change


def test_a_late_trade_past_the_horizon_is_dropped_and_counted() -> None:
    windows = BarWindows(60, 2, correction_horizon_s=0)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("AAA", 63, 11.0, 1, "2")))
    windows.advance()
    windows.add_trades(trades(("AAA", 59, 12.0, 4, "3")))
    out = windows.advance()
    assert out.final.empty and out.late_trades == 1 and out.dropped_late == 1 and out.corrected_bars == 0
    assert one(windows.flush().final, second=60)["volume"] == 1


def test_a_late_trade_for_a_window_without_trades_emits_its_first_bar_as_final() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("BBB", 100, 5.0, 1, "2")))
    windows.advance()
    windows.add_trades(trades(("BBB", 20, 4.0, 3, "3")))
    out = windows.advance()
    assert one(out.final, "BBB")["volume"] == 3 and out.corrected_bars == 1


# ---------------------------------------------------------------------------------------------
# Final and provisional


def test_open_windows_are_provisional_until_their_end_plus_lateness_by_event_time() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1")))
    out = windows.advance()
    assert out.final.empty and one(out.provisional)["close"] == 10.0
    windows.add_trades(trades(("AAA", 61.9, 11.0, 1, "2")))
    out = windows.advance()
    assert out.final.empty and out.closed_until == at(59.9)
    windows.add_trades(trades(("AAA", 62, 12.0, 1, "3")))
    out = windows.advance()
    assert one(out.final)["close"] == 10.0 and out.closed_until == at(60)
    assert set(out.provisional["ts"]) == {at(60)}  # the closed minute is no longer provisional


def test_provisional_bars_are_the_open_windows_that_changed_since_the_last_advance() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("BBB", 11, 5.0, 1, "2")))
    assert set(windows.advance().provisional["symbol"]) == {"AAA", "BBB"}
    windows.add_trades(trades(("BBB", 12, 5.5, 1, "3")))
    out = windows.advance()
    assert list(out.provisional["symbol"]) == ["BBB"] and one(out.provisional, "BBB")["high"] == 5.5
    assert windows.advance().provisional.empty


def test_provisional_bars_skipped_by_one_advance_come_with_the_next_that_asks() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("BBB", 11, 5.0, 1, "2")))
    assert windows.advance(provisional=False).provisional.empty
    windows.add_trades(trades(("BBB", 12, 5.5, 1, "3")))
    assert set(windows.advance().provisional["symbol"]) == {"AAA", "BBB"}
    windows.add_trades(trades(("AAA", 70, 6.0, 1, "4")))  # closes the first minute while skipping
    out = windows.advance(provisional=False)
    assert set(out.final["symbol"]) == {"AAA", "BBB"} and out.provisional.empty
    assert list(windows.advance().provisional["ts"]) == [at(60)]


def test_a_wall_clock_closes_windows_without_trades_and_the_clock_never_runs_back() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1")))
    assert windows.advance(at(61)).final.empty
    assert one(windows.advance(at(62)).final)["close"] == 10.0
    windows.add_trades(trades(("AAA", 30, 11.0, 1, "2")))
    out = windows.advance(at(0))  # an earlier instant: the minute stays closed, the trade is late
    assert out.closed_until == at(60) and out.late_trades == 1 and one(out.final)["close"] == 11.0
    windows.advance(int(at(200).value))  # Unix nanoseconds work too
    assert windows.advance().closed_until == at(198)


def test_flush_finalizes_every_window_and_releases_every_trade() -> None:
    windows = BarWindows(15, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1"), ("AAA", 40, 11.0, 1, "2")))
    windows.advance()
    assert windows.retained_trades == 2
    out = windows.flush()
    assert len(out.final) == 2 and out.provisional.empty  # 15s at +30, 1min at 0 (15s at 0 closed earlier)
    assert windows.retained_trades == 0


def test_empty_batches_and_an_advance_before_any_trade_change_nothing() -> None:
    windows = BarWindows(60, 2)
    out = windows.advance()
    assert out.final.empty and out.provisional.empty and out.closed_until is None
    windows.add_trades(trades())
    windows.apply_cancels(cancels())
    windows.apply_corrections(corrections())
    windows.add_trades(trades(("AAA", 10, 10.0, 1, "1")))
    windows.add_trades(trades())
    out = windows.advance()
    for bars in (out.final, out.provisional, out.removed, windows.flush().final):
        assert {c: str(t) for c, t in bars.dtypes.items()} == {c: str(t) for c, t in empty_frame(BARS).dtypes.items()}
    assert one(out.provisional)["volume"] == 1 and out.duplicates == 0


# ---------------------------------------------------------------------------------------------
# Timeframes and sessions


def test_5s_and_15s_bars_alongside_1min() -> None:
    windows = BarWindows(5, 1, timeframes=(5, 15, 60))
    windows.add_trades(trades(*[("AAA", s, 10.0 + s, 1, str(s)) for s in (1, 4, 6, 14, 16, 59)]))
    final = windows.flush().final
    assert windows.timeframes == ("5s", "15s", "1min")
    assert sorted(final[final["timeframe"] == "5s"]["ts"]) == [at(0), at(5), at(10), at(15), at(55)]
    assert one(final, timeframe="5s", second=0)["volume"] == 2
    assert one(final, timeframe="15s", second=0)[["open", "close", "volume"]].tolist() == [11.0, 24.0, 4]
    assert (
        one(final, timeframe="15s", second=15)["volume"] == 1
        and one(final, timeframe="15s", second=45)["close"] == 69.0
    )
    assert one(final, timeframe="1min")["volume"] == 6


def test_a_window_of_60s_is_not_built_twice_and_whole_minutes_are_named_in_minutes() -> None:
    assert BarWindows(60, 2).timeframes == ("1min",)
    assert BarWindows(300, 2).timeframes == ("5min", "1min")
    with pytest.raises(ConfigurationError, match="whole seconds"):
        BarWindows(2.5, 2)


def test_a_sessions_last_window_closes_with_the_next_sessions_first_trade_and_the_gap_has_no_bars() -> None:
    close = 6.5 * 3600  # 16:00 New York
    windows = BarWindows(15, 2)
    windows.add_trades(trades(("AAA", close - 1, 10.0, 1, "1")))
    assert windows.advance().final.empty
    assert windows.advance().final.empty  # no trade, no wall clock: the last minute stays open
    next_open = 24 * 3600
    windows.add_trades(trades(("AAA", next_open + 3, 11.0, 1, "2")))
    out = windows.advance()
    assert set(out.final["ts"]) == {at(close - 15), at(close - 60)}
    final = windows.flush().final
    assert set(final["ts"]) == {at(next_open)} and len(final) == 2  # 15s and 1min of the new session only


# ---------------------------------------------------------------------------------------------
# Duplicates, cancels, corrections


def test_a_replayed_trade_counts_once_and_another_exchanges_same_id_is_another_trade() -> None:
    windows = BarWindows(60, 2)
    batch = trades(("AAA", 10, 10.0, 5, "1"), ("AAA", 20, 11.0, 5, "2"))
    windows.add_trades(batch)
    windows.advance()
    windows.add_trades(pd.concat([batch, batch], ignore_index=True))
    windows.add_trades(trades(("AAA", 20, 11.0, 5, "2", "Q")))
    out = windows.flush()
    assert out.duplicates == 4
    assert one(out.final)["volume"] == 15 and one(out.final)["trade_count"] == 3


def test_a_cancel_in_an_open_window_rebuilds_its_provisional_bar() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 5, "1"), ("AAA", 20, 15.0, 5, "2"), ("AAA", 30, 11.0, 5, "3")))
    assert one(windows.advance().provisional)["high"] == 15.0
    windows.apply_cancels(cancels(("AAA", "2", "N")))
    bar = one(windows.advance().provisional)
    assert (bar["high"], bar["volume"], bar["trade_count"]) == (11.0, 10, 2)
    windows.add_trades(trades(("AAA", 20, 15.0, 5, "2")))  # a replay of the cancelled trade
    out = windows.flush()
    assert one(out.final)["high"] == 11.0 and out.duplicates == 1


def test_a_cancel_in_a_final_window_corrects_it_and_cancelling_its_only_trade_removes_it() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(
        trades(("AAA", 10, 10.0, 5, "1"), ("AAA", 20, 9.0, 5, "2"), ("BBB", 5, 1.0, 1, "7"), ("AAA", 70, 1, 1, "9"))
    )
    windows.advance()
    windows.apply_cancels(cancels(("AAA", "2", "N"), ("BBB", "7", "N")))
    out = windows.advance()
    bar = one(out.final)
    assert (bar["low"], bar["close"], bar["volume"]) == (10.0, 10.0, 5) and out.corrected_bars == 1
    assert one(out.removed, "BBB")["ts"] == T0 and (out.final["symbol"] == "BBB").sum() == 0


def test_a_cancel_without_exchange_matches_by_id_unless_ambiguous() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 10, 10.0, 5, "1"), ("AAA", 20, 9.0, 5, "2", "N"), ("AAA", 21, 8.0, 5, "2", "Q")))
    windows.apply_cancels(cancels(("AAA", "1", None), ("AAA", "2", None), ("AAA", "nope", "N")))
    out = windows.flush()
    assert out.unmatched_amends == 2
    assert one(out.final)[["open", "volume"]].tolist() == [9.0, 10]


def test_corrections_in_open_and_final_windows_and_the_corrected_id_is_known_afterwards() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(
        trades(("AAA", 10, 10.0, 5, "1"), ("AAA", 20, 10.05, 5, "2000000002"), ("AAA", 70, 20.0, 1, "3"))
    )
    windows.apply_corrections(corrections(("AAA", "3", 21.0, 2, None)))
    out = windows.advance()
    assert one(out.final)["high"] == 10.05 and one(out.provisional, second=60)[["close", "volume"]].tolist() == [
        21.0,
        2,
    ]
    windows.apply_corrections(corrections(("AAA", "2000000002", 9.5, 6, "2")))
    out = windows.advance()
    assert one(out.final)[["high", "low", "close", "volume"]].tolist() == [10.0, 9.5, 9.5, 11]
    assert out.corrected_bars == 1
    windows.add_trades(trades(("AAA", 20, 9.5, 6, "2"), ("AAA", 20, 10.05, 5, "2000000002")))  # REST, stream replays
    out = windows.flush()
    assert out.duplicates == 2 and out.unmatched_amends == 0
    assert set(out.final["ts"]) == {at(60)}  # the corrected minute did not change again


def test_a_correction_to_an_id_already_held_voids_the_wrong_print_as_a_duplicate() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(trades(("AAA", 20, 10.05, 5, "2000000002")))  # the stream's wrong first print
    windows.add_trades(trades(("AAA", 20, 10.0, 5, "2"), ("AAA", 30, 9.0, 1, "3")))  # REST catch-up: the right one
    windows.apply_corrections(corrections(("AAA", "2000000002", 10.0, 5, "2")))
    out = windows.flush()
    assert one(out.final)[["open", "high", "volume", "trade_count"]].tolist() == [10.0, 10.0, 6, 2]
    assert out.duplicates == 1 and out.unmatched_amends == 0


def test_a_cancel_after_its_trades_horizon_is_unmatched_and_changes_nothing() -> None:
    windows = BarWindows(60, 2, correction_horizon_s=10)
    windows.add_trades(trades(("AAA", 20, 10.0, 5, "1"), ("AAA", 71, 11.0, 1, "2")))
    assert one(windows.advance().final)["volume"] == 5
    windows.add_trades(trades(("AAA", 72, 11.0, 1, "3")))
    out = windows.advance()  # 13:31:10 passed: the first minute and its trades are released
    assert windows.retained_trades == 2
    windows.apply_cancels(cancels(("AAA", "1", "N")))
    out = windows.advance()
    assert out.final.empty and out.removed.empty and out.unmatched_amends == 1


# ---------------------------------------------------------------------------------------------
# Which trades count


def test_condition_rules_of_the_sip_letters_and_polygon_ids() -> None:
    every = kernels.LAST | kernels.HIGH_LOW | kernels.VOLUME
    assert condition_flags("@") == condition_flags(None) == condition_flags("@,F") == every
    assert condition_flags("@,I") == kernels.VOLUME  # odd lot: volume only
    assert condition_flags("@,Z") == kernels.HIGH_LOW | kernels.VOLUME  # sold out of sequence
    assert condition_flags("M") == 0 and condition_flags("Q,@") == 0  # official close / open
    assert condition_flags("B", "alpaca", "A") == kernels.VOLUME and condition_flags("B", "alpaca", "C") == every
    assert condition_flags("37", "polygon") == kernels.VOLUME and condition_flags("14,41", "polygon") == every
    assert (
        condition_flags("15", "polygon") == 0 and condition_flags("I", "polygon") == every
    )  # letters mean nothing there
    assert condition_flags("@,unknown") == every


def test_odd_lots_add_volume_only_and_an_official_close_counts_for_nothing() -> None:
    windows = BarWindows(60, 2)
    windows.add_trades(
        trades(
            ("AAA", 10, 10.0, 100, "1", "N", "@"),
            ("AAA", 20, 30.0, 10, "2", "N", "@,I"),
            ("AAA", 30, 9.0, 100, "3", "N", "Z"),
            ("AAA", 40, 11.0, 100, "4", "N", "@,F"),
            ("AAA", 50, 50.0, 1000, "5", "N", "M"),
        )
    )
    bar = one(windows.flush().final)
    assert bar[["open", "high", "low", "close"]].tolist() == [10.0, 11.0, 9.0, 11.0]
    assert bar["volume"] == 310 and bar["trade_count"] == 4
    assert bar["vwap"] == pytest.approx((1000 + 300 + 900 + 1100) / 310)


def test_a_window_of_odd_lots_only_takes_its_prices_from_them() -> None:
    windows = BarWindows(60, 2, source="polygon")
    windows.add_trades(
        trades(("AAA", 10, 10.0, 5, "1", "12", "37"), ("AAA", 20, 12.0, 5, "2", "12", "37"), source="polygon")
    )
    windows.add_trades(trades(("BBB", 10, 50.0, 5, "3", "12", "15"), source="polygon"))  # official close only
    out = windows.flush()
    assert one(out.final)[["open", "high", "low", "close", "volume"]].tolist() == [10.0, 12.0, 10.0, 12.0, 10]
    assert list(out.final["symbol"]) == ["AAA"] and out.final["source"].eq("polygon").all()


# ---------------------------------------------------------------------------------------------
# Against a naive reference


def reference_bars(all_trades: pd.DataFrame, widths: Sequence[int]) -> pd.DataFrame:
    """Bars by a pandas groupby over every trade, sorted by time then arrival."""
    parts = []
    ordered = all_trades.reset_index(drop=True).rename_axis("arrival").reset_index()
    ordered = ordered.sort_values(["ts", "arrival"], kind="stable")
    ordered["pv"] = ordered["price"] * ordered["size"]
    for width in widths:
        start = ordered["ts"].dt.floor(f"{width}s")
        g = ordered.groupby([ordered["symbol"].astype(str), start], sort=True)
        bars = g.agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("size", "sum"),
            pv=("pv", "sum"),
            trade_count=("price", "size"),
        ).reset_index(names=["symbol", "ts"])
        bars["vwap"] = bars["pv"] / bars["volume"]
        bars["timeframe"] = f"{width // 60}min" if width % 60 == 0 else f"{width}s"
        parts.append(bars)
    return pd.concat(parts, ignore_index=True)[[*KEY, "open", "high", "low", "close", "volume", "vwap", "trade_count"]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_micro_batches_give_the_bars_of_a_naive_groupby(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    symbols = np.array(["AAA", "BBB", "CCC", "BRK.B", "S0001"])
    seconds = np.sort(rng.choice(600_000, n, replace=False)) / 1000  # distinct milliseconds
    jitter = rng.exponential(1.5, n)  # arrival = time + a delay: out of order, often past the lateness
    arrival = np.argsort(seconds + jitter, kind="stable")
    rows = [
        (
            str(rng.choice(symbols)),
            float(seconds[i]),
            float(np.round(rng.uniform(10, 11), 2)),
            int(rng.integers(1, 500)),
            f"t{i}",
        )
        for i in range(n)
    ]
    stream = trades(*[rows[i] for i in arrival])
    windows = BarWindows(15, 2, timeframes=(15, 60), correction_horizon_s=3600)
    collected = Collected()
    at_row, steps = 0, 0
    while at_row < n and steps < n:
        size = int(rng.integers(0, 120))
        batch = stream.iloc[at_row : at_row + size]
        replay = stream.iloc[max(0, at_row - 20) : at_row].sample(frac=0.3, random_state=seed)  # duplicates
        windows.add_trades(pd.concat([batch, replay]).sample(frac=1.0, random_state=steps))
        collected.take(windows.advance())
        at_row += size
        steps += 1
    out = collected.take(windows.flush())
    expected = reference_bars(stream, (15, 60)).sort_values(KEY, ignore_index=True)
    got = collected.final[expected.columns].astype({"trade_count": "int64"}).sort_values(KEY, ignore_index=True)
    got["symbol"] = got["symbol"].astype(str)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=1e-12)
    assert out.duplicates > 0 and out.late_trades > 0 and out.corrected_bars > 0 and out.dropped_late == 0
