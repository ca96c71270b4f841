"""The read rule of storage/aggregates.py (stored bars win over the aggregate buckets they overlap)
and the refresh window (whole New York days, never before the hot window)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from storage.aggregates import closed_buckets, fill_from_aggregate, merged_ranges, refresh_window


def bars(stamps: list[str], source: str) -> pd.DataFrame:
    return pd.DataFrame({"symbol": "A", "ts": pd.to_datetime(stamps, utc=True), "source": source})


def test_stored_bars_win_on_their_buckets_and_the_aggregate_fills_the_rest() -> None:
    aggregated = bars(["2026-12-01 14:30", "2026-12-01 14:35", "2026-12-01 14:40"], "polygon/1min")
    stored = bars(["2026-12-01 14:35"], "polygon")
    merged = fill_from_aggregate(stored, aggregated, "5min")
    assert list(zip(merged["ts"].dt.strftime("%H:%M"), merged["source"], strict=True)) == [
        ("14:30", "polygon/1min"),
        ("14:35", "polygon"),
        ("14:40", "polygon/1min"),
    ]


def test_a_stored_bar_off_the_clock_grid_wins_over_every_bucket_it_overlaps() -> None:
    aggregated = bars(["2026-12-02 14:00", "2026-12-02 15:00", "2026-12-02 16:00", "2026-12-02 17:00"], "agg")
    stored = bars(["2026-12-02 14:30", "2026-12-02 15:30"], "yahoo")  # 09:30 and 10:30 New York
    merged = fill_from_aggregate(stored, aggregated, "1hour")
    assert merged["ts"].dt.strftime("%H:%M").tolist() == ["14:30", "15:30", "17:00"]


def test_other_symbols_keep_their_aggregate_bars() -> None:
    aggregated = pd.concat([bars(["2026-12-01 05:00"], "agg"), bars(["2026-12-01 05:00"], "agg").assign(symbol="B")])
    merged = fill_from_aggregate(bars(["2026-12-01 05:00"], "polygon"), aggregated, "1day")
    assert list(zip(merged["symbol"], merged["source"], strict=True)) == [("A", "polygon"), ("B", "agg")]


def test_the_refresh_window_is_whole_new_york_days_inside_the_hot_window() -> None:
    hot_since = datetime(2026, 11, 5, 12, tzinfo=UTC)
    window = refresh_window("2026-11-30 15:00Z", "2026-12-02 15:00Z", hot_since)
    assert window == (datetime(2026, 11, 30, 5, tzinfo=UTC), datetime(2026, 12, 3, 5, tzinfo=UTC))
    clipped = refresh_window("2026-10-01", "2026-11-10", hot_since)
    assert clipped is not None and clipped[0] == datetime(2026, 11, 7, 5, tzinfo=UTC)
    assert refresh_window("2026-10-01", "2026-11-01", hot_since) is None


def test_only_buckets_whose_window_has_closed_are_served() -> None:
    quarters = bars(["2026-12-01 14:30", "2026-12-01 14:45", "2026-12-01 15:00"], "agg")
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 14:45's window ends now; 15:00's has begun
    assert closed_buckets(quarters, "15min", now)["ts"].dt.strftime("%H:%M").tolist() == ["14:30", "14:45"]
    assert len(closed_buckets(quarters, "15min", now + pd.Timedelta(minutes=15))) == 3


def test_a_day_closes_at_the_next_new_york_midnight_across_daylight_saving_changes() -> None:
    # 2026-11-01 (New York falls back: a 25-hour day) and 2026-03-08 (springs forward: 23 hours)
    days = bars(["2026-11-01 04:00", "2026-03-08 05:00"], "agg")  # local midnights in UTC
    fall_end, spring_end = datetime(2026, 11, 2, 5, 0, tzinfo=UTC), datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert closed_buckets(days.iloc[[0]], "1day", fall_end - pd.Timedelta(minutes=1)).empty
    assert len(closed_buckets(days.iloc[[0]], "1day", fall_end)) == 1
    assert closed_buckets(days.iloc[[1]], "1day", spring_end - pd.Timedelta(minutes=1)).empty
    assert len(closed_buckets(days.iloc[[1]], "1day", spring_end)) == 1


def test_recorded_ranges_merge_where_they_overlap_or_lie_within_a_day() -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    recorded = [
        (at("2026-11-03 14:30"), at("2026-11-03 20:59")),
        (at("2026-06-01 14:30"), at("2026-06-02 20:59")),
        (at("2026-11-02 14:30"), at("2026-11-03 15:00")),
        (at("2026-11-04 14:30"), at("2026-11-04 20:59")),  # the next day: one refresh
        (at("2026-11-10 14:30"), at("2026-11-10 20:59")),
    ]
    assert merged_ranges(recorded) == [
        (at("2026-06-01 14:30"), at("2026-06-02 20:59")),
        (at("2026-11-02 14:30"), at("2026-11-04 20:59")),
        (at("2026-11-10 14:30"), at("2026-11-10 20:59")),
    ]
    assert merged_ranges([]) == []
