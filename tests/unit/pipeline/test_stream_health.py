"""Stream health is judged from ops.stream_status rows: silence while running, spills and drops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.alerts import STREAM_DEGRADED, stream_alerts
from pipeline.health import stream_issues
from storage.streams import StreamStatus

NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def status(state: str = "running", age_s: float = 3, **counters: int) -> StreamStatus:
    return StreamStatus(
        stream="polygon",
        source="polygon",
        state=state,
        symbols=2,
        hybrid=True,
        started_at=NOW - timedelta(hours=2),
        updated_at=NOW - timedelta(seconds=age_s),
        newest_event=NOW - timedelta(seconds=1),
        counters={"messages": 1000, **counters},
    )


def test_a_reporting_stream_without_losses_is_healthy():
    assert stream_issues([status()], NOW) == []
    assert stream_issues([status(state="stopped", age_s=7200)], NOW) == []


def test_a_running_stream_that_went_silent_is_an_issue():
    (issue,) = stream_issues([status(age_s=120)], NOW)
    assert "stream polygon has not reported since" in issue and "--hybrid" in issue


def test_spills_and_drops_are_issues_until_a_stopped_stream_ages_out():
    (issue,) = stream_issues([status(spilled=40, dropped=0)], NOW)
    assert "lost frames: 40 spilled" in issue and "raw/source=<vendor>/dataset=stream/" in issue
    assert stream_issues([status(state="stopped", age_s=600, dropped=3)], NOW) != []
    assert stream_issues([status(state="stopped", age_s=7200, dropped=3)], NOW) == []
    assert stream_issues([status(dead=5)], NOW) == []  # malformed frames alert as dead letters


def test_each_degraded_stream_is_one_alert_about_that_stream():
    entries = [status(spilled=1).to_dict(), status().to_dict() | {"stream": "alpaca:iex"}]
    (alert,) = stream_alerts(entries, NOW)
    assert alert.event == STREAM_DEGRADED and alert.resource_id == "marketpipe.stream.polygon"
    assert alert.details["counters"]["spilled"] == 1


def unconnected(since_s: float, connects: int = 0) -> StreamStatus:
    since = (NOW - timedelta(seconds=since_s)).isoformat()
    counters = {"connected": False, "unconnected_since": since, "connects": connects, "last_error": "refused"}
    return StreamStatus(**{**status().__dict__, "counters": counters})


def test_a_stream_that_never_connected_is_an_issue_and_an_alert_though_it_reports():
    (issue,) = stream_issues([unconnected(120)], NOW)
    assert "stream polygon has not connected since it started at" in issue and "last error: refused" in issue
    assert "vendors.polygon.stream_url" in issue
    (alert,) = stream_alerts([unconnected(120).to_dict()], NOW)
    assert alert.event == STREAM_DEGRADED and alert.resource_id == "marketpipe.stream.polygon"


def test_a_stream_without_a_connection_for_long_is_an_issue_and_a_short_reconnect_is_not():
    (issue,) = stream_issues([unconnected(120, connects=3)], NOW)
    assert "has had no connection since" in issue
    assert stream_issues([unconnected(10, connects=3)], NOW) == []
    assert stream_issues([unconnected(10)], NOW) == []


def test_a_stream_whose_recent_batch_was_mostly_stamped_in_the_future_is_named_with_the_clock_to_check():
    recent = int((NOW - timedelta(minutes=2)).timestamp() * 1e9)
    (issue,) = stream_issues([status(future_events=12_000, future_heavy_ns=recent, future_heavy_share=0.98)], NOW)
    assert issue.startswith("stream polygon: 98% of a micro-batch at 2026-12-04 14:58:00 UTC was stamped more")
    assert "12000 such rows" in issue and "NTP" in issue
    old = int((NOW - timedelta(hours=1)).timestamp() * 1e9)
    assert stream_issues([status(future_events=12_000, future_heavy_ns=old, future_heavy_share=0.98)], NOW) == []
    assert stream_issues([status(future_events=3)], NOW) == []  # a few bad prints: dead letters only


def held(state: str = "running", age_s: float = 3, retries: int = 1) -> StreamStatus:
    counters = {
        "open_spans": 1,
        "open_span": "AAPL from 2026-12-04T14:31:00+00:00 to 2026-12-04T14:32:00+00:00 (after a spill)",
        "open_span_since": (NOW - timedelta(minutes=3)).isoformat(),
        "open_span_retries": retries,
        "open_span_error": "polygon answered 503",
    }
    return StreamStatus(**{**status(state, age_s).__dict__, "counters": counters})


def test_a_span_its_catch_up_could_not_fill_past_a_retry_is_named_with_the_stream():
    (issue,) = stream_issues([held()], NOW)
    assert issue.startswith(
        "stream polygon (running) has 1 span(s) its REST catch-up could not fill since 2026-12-04 14:57"
    )
    assert "AAPL from 2026-12-04T14:31:00+00:00" in issue and "polygon answered 503" in issue
    assert stream_issues([held(retries=0)], NOW) == []  # left open a moment ago: its first retry is due
    assert stream_issues([held(state="stopped", age_s=600)], NOW) != []  # the next hybrid run fetches it
    assert stream_issues([held(state="stopped", age_s=7200)], NOW) == []


def test_a_span_left_unfilled_in_ops_stream_gaps_is_an_issue_once_old_enough():
    """Read from ops.stream_gaps, not from a status row: named after its process died. One issue per
    span (its rows per symbol and dataset together); a span younger than the threshold is not one."""
    from pipeline.health import STREAM_GAP_AFTER, stream_gap_issues
    from storage.stream_gaps import StreamGap

    start, end = NOW - timedelta(hours=1), NOW - timedelta(minutes=50)

    def row(span: str, symbol: str, dataset: str, age: timedelta, state: str = "open") -> StreamGap:
        return StreamGap(span, "polygon", "polygon", symbol, dataset, start, end, "connect", state, "503", 2, NOW - age)

    old, young = STREAM_GAP_AFTER + timedelta(seconds=1), STREAM_GAP_AFTER - timedelta(seconds=1)
    rows = [row("a", "AAPL", "trades", old), row("a", "MSFT", "bars", old), row("b", "IBM", "trades", young)]

    (issue,) = stream_gap_issues(rows, NOW)
    assert issue.startswith(f"stream polygon: the span of AAPL, MSFT (bars, trades) from {start.isoformat()}")
    assert "(open; 2 failed retries, last error: 503)" in issue and "IBM" not in issue
    (given_up,) = stream_gap_issues([row("c", "IBM", "trades", old, "given_up")], NOW)
    assert "given up by the run that recorded it" in given_up


def test_a_span_named_by_its_running_streams_status_is_not_named_again_from_ops_stream_gaps():
    """While the stream that recorded a span is alive (or stopped within the hour), its status row
    names its unfilled spans: the table's rows of that stream are not a second issue. Another
    stream's rows are."""
    from pipeline.health import STREAM_GAP_AFTER, all_stream_issues
    from storage.stream_gaps import StreamGap

    start, end = NOW - timedelta(hours=1), NOW - timedelta(minutes=50)
    recorded = NOW - STREAM_GAP_AFTER - timedelta(seconds=1)

    def row(stream: str) -> StreamGap:
        return StreamGap(
            "a" + stream, stream, "polygon", "AAPL", "trades", start, end, "spill", "open", "503", 2, recorded
        )

    (issue,) = all_stream_issues([held()], [row("polygon")], NOW)
    assert issue.startswith("stream polygon (running) has 1 span(s) its REST catch-up could not fill")
    issues = all_stream_issues([held()], [row("polygon"), row("polygon:other")], NOW)
    assert len(issues) == 2 and issues[1].startswith("stream polygon:other: the span of AAPL (trades)")
    gone = held(state="stopped", age_s=7200)  # its status row no longer names it: the table does
    (from_table,) = all_stream_issues([gone], [row("polygon")], NOW)
    assert from_table.startswith("stream polygon: the span of AAPL (trades)")
