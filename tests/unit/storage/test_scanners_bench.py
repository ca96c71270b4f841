"""Pure parts of bench/storage.py: its frozen reference scanners, synthetic data, report and table."""

from __future__ import annotations

import re
from datetime import date, timedelta

from bench import storage


def test_reference_scanners_are_the_replaced_ones_unqualified() -> None:
    created = re.findall(r"^CREATE (?:OR REPLACE )?FUNCTION ([\w.]+)\(", storage.REFERENCE_SCANNERS.read_text(), re.M)

    assert sorted(created) == sorted(storage.REPLACED)  # no schema: create_reference_scanners picks it
    assert "scan.check_positive(" in storage.REFERENCE_SCANNERS.read_text()  # the bodies call the real helpers


def test_percentiles_are_in_milliseconds() -> None:
    p50, p95 = storage.percentiles([0.001 * i for i in range(1, 101)])

    assert round(p50, 6) == 50.5 and round(p95, 6) == 95.05


def test_session_days_are_the_last_nyse_sessions_with_their_half_day() -> None:
    days = storage.session_days(3)

    assert [d[0].isoformat() for d in days] == [
        "2024-11-26T14:30:00+00:00",
        "2024-11-27T14:30:00+00:00",
        "2024-11-29T14:30:00+00:00",
    ]
    assert days[-1][1].isoformat() == "2024-11-29T18:00:00+00:00"  # the day after Thanksgiving closes at 13:00


def test_synthetic_session_has_every_minute_of_every_symbol() -> None:
    open_utc, close_utc = storage.session_days(1)[0]

    bars = storage.synthetic_session(3, 0, open_utc, close_utc)

    assert len(bars) == 3 * 210 and bars["symbol"].nunique() == 3
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


def test_summary_has_the_required_keys_and_renders() -> None:
    parts = {
        "latencies_ms": {name: (1.0, 2.0) for name in ("latest_bar", "top_movers", "volume_spikes")},
        "server_latencies_ms": {name: (0.5, 1.0) for name in ("latest_bar", "top_movers", "volume_spikes")},
        "scanner_rows": {"latest_bar": 5, "top_movers": 5, "volume_spikes": 0},
        "load": {
            "generate_series_rows_per_s": 100,
            "copy_rows_per_s": 200,
            "bulk_method": "copy",
            "trigger_overhead_fraction": 0.1,
        },
        "symbols": 5,
        "sessions": 2,
        "rows": 3900,
        "hot_bytes": 1000,
        "tiering": {"via": "x", "chunks": 2, "rows": 3900, "bytes": 250, "seconds": 0.5, "compression": "snappy"},
        "symbol_month_read": {"symbol": "S00002", "rows": 780, "hot_ms": 2.0, "cold_ms": 20.0},
        "cpus": 2,
        "load_average_1min": 1.5,
    }

    report = storage.summarize(parts)

    assert {
        k: report[k]
        for k in (
            "latest_bar_p50_ms",
            "latest_bar_p95_ms",
            "top_movers_p50_ms",
            "top_movers_p95_ms",
            "tiering_mb_per_s",
            "lake_to_hot_bytes_ratio",
        )
    } == {
        "latest_bar_p50_ms": 1.0,
        "latest_bar_p95_ms": 2.0,
        "top_movers_p50_ms": 1.0,
        "top_movers_p95_ms": 2.0,
        "tiering_mb_per_s": 0.0,
        "lake_to_hot_bytes_ratio": 0.25,
    }
    assert report["targets_met"] is True
    table = storage.render_table(report)
    assert "latest_bar" in table and "p95 < 50 ms: met" in table and "symbol-month read, cold" in table
    assert "10.0x hot" in table and "trigger cost 10.0%" in table


def test_a_run_without_tiering_or_load_reports_none_for_them_and_renders() -> None:
    parts = {
        "latencies_ms": {"latest_bar": (1.0, 2.0), "top_movers": (3.0, 4.0)},
        "server_latencies_ms": {"latest_bar": (0.5, 1.0), "top_movers": (1.0, 2.0)},
        "scanner_rows": {"latest_bar": 5, "top_movers": 5},
        "load": {},
        "symbols": 5,
        "sessions": 2,
        "rows": 3900,
        "hot_bytes": 1000,
        "tiering": None,
        "symbol_month_read": {"symbol": "S00002", "rows": 780, "hot_ms": 2.0, "cold_ms": None},
        "cpus": 2,
        "load_average_1min": 1.5,
    }

    report = storage.summarize(parts)

    assert (report["tiering"], report["tiering_mb_per_s"], report["lake_to_hot_bytes_ratio"]) == (None, None, None)
    table = storage.render_table(report)
    assert "tiering: skipped" in table and "load: none" in table and "symbol-month read, cold" not in table


def test_rows_digest_ignores_row_order_but_not_values() -> None:
    rows = [("S00001", 1.5, 10), ("S00002", 2.25, 20)]

    assert storage.rows_digest(rows) == storage.rows_digest(list(reversed(rows)))
    assert storage.rows_digest(rows) != storage.rows_digest([("S00001", 1.5000000001, 10), rows[1]])


def test_future_sessions_are_full_sessions_a_week_ahead() -> None:
    days = storage.future_sessions(4, date(2026, 11, 20))  # Thanksgiving week: the half day is left out

    assert len(days) == 4 and days[0][0].date() >= date(2026, 11, 27)
    assert all(close - open_ == timedelta(minutes=390) for open_, close in days)
    assert date(2026, 11, 27) not in [open_.date() for open_, _ in days]


def test_ingest_comparison_pools_the_runs_of_each_side() -> None:
    runs = [
        {"policy": False, "rows": 1000, "seconds": 1.0},
        {"policy": True, "rows": 1000, "seconds": 1.2},
        {"policy": True, "rows": 1000, "seconds": 0.8},
        {"policy": False, "rows": 1000, "seconds": 1.5},
    ]

    figures = storage.ingest_comparison(runs)

    assert figures["without_policy_rows_per_s"] == 800 and figures["with_policy_rows_per_s"] == 1000
    assert figures["with_to_without_ratio"] == 1.25


def test_on_the_apache_edition_the_compression_parts_say_so_and_count_for_no_target() -> None:
    parts = {
        "latencies_ms": {"latest_bar": (1.0, 2.0), "top_movers": (3.0, 4.0)},
        "server_latencies_ms": {"latest_bar": (0.5, 1.0), "top_movers": (1.0, 2.0)},
        "scanner_rows": {"latest_bar": 5, "top_movers": 5},
        "load": {},
        "symbols": 5,
        "sessions": 2,
        "rows": 3900,
        "hot_bytes": 1000,
        "tiering": None,
        "symbol_month_read": {"symbol": "S00002", "rows": 780, "hot_ms": 2.0, "cold_ms": None},
        "compressed": {"available": False, "reason": storage.NOT_AVAILABLE.format(edition="apache")},
        "timescaledb": {"version": "2.19.3", "edition": "apache"},
        "cpus": 2,
        "load_average_1min": 1.5,
    }

    report = storage.summarize(parts)

    assert report["compressed"] == {"available": False, "reason": "not available on the apache edition"}
    assert (report["compression_ratio"], report["ingest_policy_ratio"], report["compressed_top_movers_p95_ms"]) == (
        None,
        None,
        None,
    )
    assert report["targets"]["compression_ratio"]["met"] is None and report["targets_met"] is True
    assert "native compression: not available on the apache edition" in storage.render_table(report)
