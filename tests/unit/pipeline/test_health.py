"""Health decisions (pure): calendar-aware staleness, dead-letter growth, component and breaker issues."""

from __future__ import annotations

from datetime import UTC, datetime

from core.settings import Settings
from pipeline.components import ComponentStatus, StackStatus
from pipeline.health import (
    DeadLetterCounts,
    component_issues,
    dataset_freshness,
    dead_letter_issues,
    source_states,
    stale_datasets,
)
from sources.base import BaseSource, SourceContext
from sources.resilience import CircuitBreaker, Resilience
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
    breaker = CircuitBreaker("polygon", failure_threshold=2, cooldown_seconds=60, clock=lambda: 100.0)
    breaker.record_failure()
    breaker.record_failure()
    source = StubSource(SourceContext(name="polygon", resilience=Resilience("polygon", breaker=breaker)))
    dead = [DeadLetterCounts("polygon", open=2, last_hour=2, previous_hour=0)]
    states, issues = source_states(Settings(), {"polygon": source}, dead)
    assert states["polygon"]["state"] == "open" and states["polygon"]["observed"] is True
    assert states["polygon"]["dead_letters_last_hour"] == 2
    assert issues == [
        "the circuit breaker of polygon is open after 2 consecutive failures (requests resume in 60.0 s); "
        "check the vendor's status and `marketpipe dlq list --source polygon`"
    ]


def test_breakers_of_other_processes_are_reported_unknown_not_healthy() -> None:
    states, issues = source_states(Settings(), None, [])
    assert set(states) >= {"polygon", "alpaca", "yahoo", "reddit"}
    assert states["alpaca"]["state"] == "unknown" and states["alpaca"]["observed"] is False
    assert issues == []
