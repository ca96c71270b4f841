"""Health decisions (pure): calendar-aware staleness, dead-letter growth, component and breaker issues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.settings import Settings
from pipeline.components import ComponentStatus, StackStatus
from pipeline.health import (
    DeadLetterCounts,
    breaker_warnings,
    component_issues,
    dataset_freshness,
    dead_letter_issues,
    format_health,
    source_states,
    stale_datasets,
)
from sources.base import BaseSource, SourceContext
from sources.resilience import BreakerRecord, BreakerState, CircuitBreaker, Resilience
from storage.watermarks import Watermark

# Friday 2024-03-08, after the 16:00 ET (21:00 UTC) close; sessions Mon 03-04 .. Fri 03-08.
FRIDAY_EVENING = datetime(2024, 3, 8, 22, 0, tzinfo=UTC)


def daily(symbol: str, session: str) -> Watermark:
    """A daily bar's watermark: 00:00 New York of the session (05:00 UTC before DST)."""
    return Watermark("polygon", "bars", symbol, "1day", datetime.fromisoformat(f"{session}T05:00:00+00:00"))


def minute(symbol: str, ts: str) -> Watermark:
    return Watermark("polygon", "bars", symbol, "1min", datetime.fromisoformat(ts))


def test_daily_series_is_stale_after_missing_more_than_two_closed_sessions() -> None:
    marks = [daily("AAPL", "2024-03-08"), daily("MSFT", "2024-03-06"), daily("TSLA", "2024-03-05")]
    [fresh] = dataset_freshness(marks, FRIDAY_EVENING)
    assert (fresh.source, fresh.dataset, fresh.timeframe, fresh.symbols) == ("polygon", "bars", "1day", 3)
    assert fresh.stale_symbols == ("TSLA",)  # Wed, Thu, Fri missed; MSFT misses Thu and Fri only
    assert fresh.missed_sessions == 3 and fresh.oldest_symbol == "TSLA"
    assert "TSLA was last committed at 2024-03-05" in fresh.issue() and "marketpipe run" in fresh.issue()


def test_weekends_do_not_count_as_missed_sessions() -> None:
    monday_morning = datetime(2024, 3, 11, 14, 0, tzinfo=UTC)  # 10:00 EDT, Monday's session still trading
    [fresh] = dataset_freshness([daily("AAPL", "2024-03-07")], monday_morning)  # four calendar days old
    assert fresh.missed_sessions == 1 and not fresh.stale  # only Friday closed since


def test_holidays_do_not_count_and_a_trading_session_is_not_missed() -> None:
    after_good_friday = datetime(2024, 4, 1, 15, 0, tzinfo=UTC)  # Monday, trading; 2024-03-29 was a holiday
    assert stale_datasets([minute("AAPL", "2024-03-28T19:59:00+00:00")], after_good_friday) == []
    [fresh] = dataset_freshness([minute("AAPL", "2024-03-28T19:59:00+00:00")], after_good_friday)
    assert fresh.missed_sessions == 0


def test_intraday_series_is_stale_after_missing_more_than_one_session() -> None:
    marks = [minute("AAPL", "2024-03-07T20:59:00+00:00"), minute("MSFT", "2024-03-06T20:59:00+00:00")]
    [stale] = stale_datasets(marks, FRIDAY_EVENING)
    assert stale.timeframe == "1min" and stale.stale_symbols == ("MSFT",)


def test_thresholds_are_per_timeframe_and_datasets_without_one_are_never_stale() -> None:
    marks = [
        daily("AAPL", "2024-03-07"),
        Watermark("polygon", "corporate_actions", "AAPL", "", datetime(2020, 1, 2, tzinfo=UTC)),
    ]
    assert [f.timeframe for f in stale_datasets(marks, FRIDAY_EVENING, {"1day": 0})] == ["1day"]
    actions = next(f for f in dataset_freshness(marks, FRIDAY_EVENING) if f.dataset == "corporate_actions")
    assert actions.allowed_missed_sessions is None and not actions.stale


def test_sources_and_timeframes_are_reported_separately() -> None:
    marks = [
        daily("AAPL", "2024-03-08"),
        minute("AAPL", "2024-03-08T20:59:00+00:00"),
        Watermark("alpaca", "bars", "AAPL", "1day", datetime(2024, 3, 8, 5, tzinfo=UTC)),
    ]
    keys = [(f.source, f.timeframe) for f in dataset_freshness(marks, FRIDAY_EVENING)]
    assert keys == [("alpaca", "1day"), ("polygon", "1day"), ("polygon", "1min")]
    assert dataset_freshness([], FRIDAY_EVENING) == []


def test_dead_letters_growing_in_the_last_hour_are_an_issue_per_source() -> None:
    counts = [
        DeadLetterCounts("polygon", open=12, last_hour=5, previous_hour=1),
        DeadLetterCounts("yahoo", open=3, last_hour=0, previous_hour=3),
    ]
    [issue] = dead_letter_issues(counts)
    assert issue.startswith("dead letters of polygon are growing: 5 request(s)")
    assert "1 in the hour before, 12 open in total" in issue and "marketpipe dlq list --source polygon" in issue


def stack_status(**healthy: bool) -> StackStatus:
    return StackStatus(
        {
            name: ComponentStatus(name, ok, f"http://{name}", None, "ok" if ok else "not running")
            for name, ok in healthy.items()
        }
    )


def test_a_component_down_is_an_issue_naming_it_and_marketpipe_up() -> None:
    issues = component_issues(stack_status(postgres=True, lake=False, prefect=True, sandbox=True), Settings())
    assert issues == [
        "the lake (lake at http://lake) is not healthy: not running; start the stack with `marketpipe up` and "
        "check `marketpipe status` and its log in <state_dir>/log/"
    ]


def test_the_sandbox_matters_only_when_vendors_route_to_it() -> None:
    status = stack_status(postgres=True, lake=True, prefect=True, sandbox=False)
    assert len(component_issues(status, Settings())) == 1
    assert component_issues(status, Settings(sandbox={"route_vendors": False})) == []


class StubSource(BaseSource):
    name = "stub"

    async def fetch_data(self, symbol, start_date, end_date):  # pragma: no cover - never called
        raise NotImplementedError


def test_an_open_breaker_of_a_source_built_here_is_an_issue() -> None:
    breaker = CircuitBreaker(
        "polygon", failure_threshold=2, cooldown_seconds=60, clock=lambda: 100.0, wall_clock=lambda: FRIDAY_EVENING
    )
    breaker.record_failure()
    breaker.record_failure("polygon answered 503")
    source = StubSource(SourceContext(name="polygon", resilience=Resilience("polygon", breaker=breaker)))
    dead = [DeadLetterCounts("polygon", open=2, last_hour=2, previous_hour=0)]
    states, issues = source_states(Settings(), {"polygon": source}, dead)
    assert states["polygon"]["state"] == "open" and states["polygon"]["observed"] is True
    assert states["polygon"]["dead_letters_last_hour"] == 2
    assert issues == [
        "the circuit breaker of polygon is open since 2024-03-08 22:00:00 UTC after 2 consecutive failures "
        "(requests resume in 60.0 s); last error: polygon answered 503; check the vendor's status and "
        "`marketpipe dlq list --source polygon`"
    ]


def test_breakers_are_unknown_only_when_not_shared() -> None:
    states, issues = source_states(Settings(), None, [])
    assert set(states) >= {"polygon", "alpaca", "yahoo", "reddit"}
    assert states["alpaca"]["state"] == "unknown" and states["alpaca"]["observed"] is False
    assert issues == []


def published(state: BreakerState, opened_minutes_ago: float | None, failures: int = 5) -> BreakerRecord:
    opened = None if opened_minutes_ago is None else FRIDAY_EVENING - timedelta(minutes=opened_minutes_ago)
    return BreakerRecord(
        "yahoo",
        state,
        opened,
        failures,
        300.0,
        "yahoo answered 503 for GET /v8/chart/AAPL",
        "worker-2:4711",
        opened or FRIDAY_EVENING,
    )


def test_a_breaker_another_process_opened_is_an_issue_naming_where_and_why() -> None:
    states, issues = source_states(Settings(), None, [], {"yahoo": published(BreakerState.OPEN, 1)}, FRIDAY_EVENING)
    assert states["yahoo"]["state"] == "open" and states["yahoo"]["healthy"] is False
    assert states["yahoo"]["retry_in_seconds"] == 240.0
    assert states["polygon"]["state"] == "closed" and states["polygon"]["healthy"] is True  # nothing published
    [issue] = issues
    assert issue.startswith("the circuit breaker of yahoo is open since 2024-03-08 21:59:00 UTC after 5 consecutive")
    assert "seen by worker-2:4711" in issue and "last error: yahoo answered 503" in issue


def test_a_published_opening_past_its_cooldown_is_a_half_open_warning_not_an_issue() -> None:
    states, issues = source_states(Settings(), None, [], {"yahoo": published(BreakerState.OPEN, 10)}, FRIDAY_EVENING)
    assert states["yahoo"]["state"] == "half_open" and issues == []
    [warning] = breaker_warnings(states)
    assert "yahoo is half-open" in warning and "next request to yahoo is a trial" in warning


def test_a_published_closing_is_healthy() -> None:
    states, issues = source_states(
        Settings(), None, [], {"yahoo": published(BreakerState.CLOSED, None, 0)}, FRIDAY_EVENING
    )
    assert states["yahoo"]["state"] == "closed" and states["yahoo"]["healthy"] is True and issues == []


def health_report(**overrides: Any) -> dict[str, Any]:
    states, issues = source_states(Settings(), None, [], {"yahoo": published(BreakerState.OPEN, 1)}, FRIDAY_EVENING)
    marks = [daily("AAPL", "2024-03-08"), daily("TSLA", "2024-03-05")]
    freshness = dataset_freshness(marks, FRIDAY_EVENING)
    report: dict[str, Any] = {
        "healthy": False,
        "issues": [*issues, freshness[0].issue()],
        "warnings": [],
        "checked_at": FRIDAY_EVENING.isoformat(),
        "components": {"postgres": {"healthy": True, "address": "127.0.0.1:5432", "detail": "accepting connections"}},
        "timescaledb": {"version": "2.28.3", "edition": "timescale"},
        "jobs": None,
        "sources": states,
        "streams": [],
        "freshness": [f.to_dict() for f in freshness],
        "dead_letters": {"open": 3, "last_hour": 0, "previous_hour": 0, "by_source": {}},
    }
    report.update(overrides)
    return report


def test_the_human_report_shows_what_was_checked_and_why_it_is_unhealthy() -> None:
    text = "\n".join(format_health(health_report()))
    assert text.startswith("UNHEALTHY: 2 issue(s) (checked at 2024-03-08 22:00 UTC)")
    assert "postgres   healthy    127.0.0.1:5432" in text and "TimescaleDB 2.28.3, edition: timescale" in text
    assert "dead letters: 3 open, 0 in the last hour" in text
    assert (
        "  yahoo      OPEN       dead letters: 0 in the last hour; opened 2024-03-08 21:59 UTC after 5 failures" in text
    )
    assert "seen by worker-2:4711" in text
    assert "  polygon    closed     dead letters: 0 in the last hour; no opening published by any process" in text
    assert "polygon bars 1day" in text and "missed 3 of 2 allowed: STALE: TSLA" in text
    assert "\nissues:\n- the circuit breaker of yahoo is open" in text


def test_the_human_report_says_when_freshness_could_not_be_checked() -> None:
    lines = format_health(health_report(healthy=True, issues=[], freshness=None))
    assert lines[0] == "healthy (checked at 2024-03-08 22:00 UTC)"
    assert "  not checked: the database cannot be read" in lines and "issues:" not in lines
