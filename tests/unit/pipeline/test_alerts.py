from datetime import UTC, datetime

from pipeline.alerts import (
    BREAKER_OPEN,
    DATA_STALE,
    DEAD_LETTERS_GROWING,
    QUALITY_LOW,
    breaker_alerts,
    dead_letter_alerts,
    freshness_from_dict,
    quality_alerts,
    stale_alerts,
)
from pipeline.health import DatasetFreshness, DeadLetterCounts
from pipeline.metrics import RunMetrics

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def run(run_id: str, score: float | None, parent: str | None = None) -> RunMetrics:
    return RunMetrics(
        run_id=run_id,
        flow="pipeline",
        started_at=NOW,
        finished_at=NOW,
        status="completed",
        quality_score=score,
        parent_run_id=parent,
    )


def freshness(stale: tuple[str, ...]) -> DatasetFreshness:
    return DatasetFreshness(
        source="polygon",
        dataset="bars",
        timeframe="1day",
        symbols=3,
        newest_ts=NOW,
        oldest_ts=NOW,
        oldest_symbol="AAPL",
        missed_sessions=4,
        allowed_missed_sessions=2,
        stale_symbols=stale,
    )


def test_only_top_level_runs_below_the_threshold_alert() -> None:
    alerts = quality_alerts([run("a", 0.5), run("b", 0.9), run("c", None), run("d", 0.1, parent="a")], 0.8)
    assert [(a.event, a.resource_id) for a in alerts] == [(QUALITY_LOW, "marketpipe.run.a")]
    assert "0.500, below the threshold 0.8" in alerts[0].message


def test_a_stale_dataset_alerts_about_the_dataset() -> None:
    alerts = stale_alerts([freshness(("AAPL",)), freshness(())])
    assert [(a.event, a.resource_id) for a in alerts] == [(DATA_STALE, "marketpipe.dataset.polygon.bars.1day")]
    assert alerts[0].payload()["stale_symbols"] == ["AAPL"]


def test_freshness_survives_the_reports_dict_form() -> None:
    original = freshness(("AAPL", "MSFT"))
    assert freshness_from_dict(original.to_dict()) == original


def test_dead_letters_alert_only_when_they_grew_in_the_last_hour() -> None:
    alerts = dead_letter_alerts([DeadLetterCounts("polygon", 5, 2, 0), DeadLetterCounts("yahoo", 3, 0, 3)])
    assert [(a.event, a.resource_id) for a in alerts] == [(DEAD_LETTERS_GROWING, "marketpipe.source.polygon")]
    assert alerts[0].resource()["prefect.resource.name"] == "polygon"


def test_an_open_breaker_alerts_once_per_source_and_a_half_open_or_closed_one_does_not() -> None:
    sources = {
        "yahoo": {
            "state": "open",
            "opened_at": NOW.isoformat(),
            "consecutive_failures": 5,
            "retry_in_seconds": 12.5,
            "last_error": "yahoo answered 503",
            "seen_by": "worker-2:4711",
        },
        "polygon": {"state": "half_open", "opened_at": NOW.isoformat(), "consecutive_failures": 5},
        "alpaca": {"state": "closed"},
    }
    [alert] = breaker_alerts(sources)
    assert alert.event == BREAKER_OPEN and alert.resource_id == "marketpipe.source.yahoo"
    assert alert.message.startswith("the circuit breaker of yahoo is open since 2026-11-26 12:00:00 UTC")
    assert alert.details["seen_by"] == "worker-2:4711" and alert.details["last_error"] == "yahoo answered 503"
