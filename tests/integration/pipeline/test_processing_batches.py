"""Collected symbols processed in batches (``tasks.pending.PendingProcessor``): a batch stores and
reports exactly what processing each symbol alone does, and one symbol's failure reaches that
symbol alone. Pages come from the stack's market sandbox over HTTP; the real database and lake."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable, Iterator, Mapping

import pytest

from core.settings import Settings
from db.connect import database_connection
from pipeline.metrics import run_metrics
from pipeline.request import IngestRequest, parse_ingest_request
from sources.factory import build_source
from tasks import pending
from tasks.batches import Batch, Outcomes, process_bars_pending
from tasks.collection import ParsedPage
from tasks.ingestion import IngestSummary, SymbolRun, symbol_wave_task
from tasks.pending import PendingProcessor, process_symbol_pending
from tasks.resources import RunResources
from tests.support.collection import NOW, collect

WEEK = ("2024-03-04", "2024-03-08T23:59:59")


@pytest.fixture
def symbols(stack: Settings) -> Iterator[Callable[[], str]]:
    """Symbols of the sandbox's size (at most 6 characters) no other test uses; what was stored
    for them is deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"PB{secrets.token_hex(2).upper()}")
        return made[-1]

    yield make
    with database_connection(stack) as conn, conn.transaction():
        for table in ("market.bars_intraday", "market.latest_bars", "ops.raw_pages", "ops.watermarks"):
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (made,))  # type: ignore[arg-type]


def stored(stack: Settings, names: list[str]) -> dict[str, list[tuple]]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT symbol, ts, open, high, low, close, volume, vwap, trade_count, quality_flags "
            "FROM market.bars_intraday WHERE symbol = ANY(%s) ORDER BY symbol, ts",
            (names,),
        ).fetchall()
    out: dict[str, list[tuple]] = {name: [] for name in names}
    for row in rows:
        out[row[0]].append(row[1:])
    return out


def unprocessed(stack: Settings, names: list[str]) -> set[str]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT DISTINCT symbol FROM ops.raw_pages WHERE symbol = ANY(%s) AND processed_at IS NULL", (names,)
        ).fetchall()
    return {r[0] for r in rows}


def mistimed(parsed: Mapping[str, ParsedPage]) -> dict[str, ParsedPage]:
    """Pages whose bars carry a timeframe nothing knows: their processing raises."""
    return {
        key: ParsedPage(page.request, page.frame.assign(timeframe="7sec"), page.served_at)
        for key, page in parsed.items()
    }


def process_batch(
    resources: RunResources, names: list[str], parsed: dict[str, dict[str, ParsedPage]]
) -> tuple[PendingProcessor, list[object]]:
    async def run() -> tuple[PendingProcessor, list[object]]:
        processor = PendingProcessor(resources, "polygon", "1min", "market_data", max_symbols=len(names), lanes=1)
        outcomes = await asyncio.gather(*(processor.process(n, parsed[n]) for n in names), return_exceptions=True)
        return processor, outcomes

    return asyncio.run(run())


def test_a_batch_stores_and_reports_what_processing_each_symbol_alone_does(stack: Settings, symbols) -> None:
    names = [symbols() for _ in range(4)]
    parsed = {name: collect(stack, name, *WEEK, keep_parsed=True).parsed for name in names}
    with RunResources.from_settings(stack) as resources:
        processor, batched = process_batch(resources, names, parsed)
        assert processor.batches == [4]  # all four were waiting when the processor started
        together = stored(stack, names)
        assert all(len(together[name]) > 1500 for name in names) and not unprocessed(stack, names)
        with database_connection(stack) as conn:  # again, a symbol at a time, from the raw zone
            conn.execute("DELETE FROM market.bars_intraday WHERE symbol = ANY(%s)", (names,))
            conn.execute("UPDATE ops.raw_pages SET processed_at = NULL WHERE symbol = ANY(%s)", (names,))
        alone = [process_symbol_pending(resources, "polygon", name, "1min", "market_data") for name in names]
    assert stored(stack, names) == together
    for one_batch, one_alone in zip(batched, alone, strict=True):
        assert isinstance(one_batch, list) and len(one_batch) == len(one_alone) == 1
        (outcome, result), (outcome_alone, result_alone) = one_batch[0], one_alone[0]
        assert dataclasses.asdict(outcome) == dataclasses.asdict(outcome_alone)
        assert outcome.inserted == outcome.accepted > 1500 and outcome.quality_score is not None
        assert result is not None and result_alone is not None
        assert result.coverage.equals(result_alone.coverage) and result.rule_counts == result_alone.rule_counts


def test_a_failing_symbol_fails_alone_and_its_pages_stay_pending(stack: Settings, symbols) -> None:
    names = [symbols() for _ in range(3)]
    parsed = {name: collect(stack, name, *WEEK, keep_parsed=True).parsed for name in names}
    broken = mistimed(parsed[names[1]])
    with RunResources.from_settings(stack) as resources:
        processor, outcomes = process_batch(resources, names, {**parsed, names[1]: broken})
    assert processor.batches == [3]
    assert isinstance(outcomes[1], Exception) and "7sec" in str(outcomes[1])
    for index in (0, 2):
        ((outcome, _),) = outcomes[index]  # type: ignore[misc]
        assert outcome.inserted > 1500 and outcome.error is None
    together = stored(stack, names)
    assert together[names[1]] == [] and all(together[names[i]] for i in (0, 2))
    assert unprocessed(stack, names) == {names[1]}


def arriving_one_by_one(
    resources: RunResources,
    names: list[str],
    parsed: dict[str, dict[str, ParsedPage]],
    *,
    wait_seconds: float,
    expected: int,
    forgone: int = 0,
) -> PendingProcessor:
    """The symbols submitted one after the other, a tenth of a second apart (as under a vendor's
    latency), to a processor that expects ``expected`` of them, ``forgone`` of which never come."""

    async def run() -> PendingProcessor:
        processor = PendingProcessor(
            resources, "polygon", "1min", "market_data", max_symbols=16, lanes=1, wait_seconds=wait_seconds
        )
        processor.expect(expected)
        queued = []
        for name in names:
            queued.append(await processor.submit(name, parsed[name]))
            await asyncio.sleep(0.1)
        for _ in range(forgone):
            processor.forgo()
        # a batch waiting for a symbol that never comes would hold these for its whole wait (an hour)
        done = await asyncio.wait_for(asyncio.gather(*queued), timeout=120)
        assert all(len(series) == 1 and series[0][0].inserted > 1500 for series in done)
        return processor

    return asyncio.run(run())


def test_symbols_arriving_one_by_one_wait_for_each_other_while_more_are_expected(stack: Settings, symbols) -> None:
    names = [symbols() for _ in range(3)]
    parsed = {name: collect(stack, name, *WEEK, keep_parsed=True).parsed for name in names}
    with RunResources.from_settings(stack) as resources:
        processor = arriving_one_by_one(resources, names, parsed, wait_seconds=3600.0, expected=3)
    assert processor.batches == [3]
    assert not unprocessed(stack, names)


def test_a_batch_does_not_wait_for_a_forgone_symbol(stack: Settings, symbols) -> None:
    """Four expected, three submitted, one forgone (its collection raised): the three are processed
    together as soon as the fourth is known not to come, not after the hour's wait."""
    names = [symbols() for _ in range(3)]
    parsed = {name: collect(stack, name, *WEEK, keep_parsed=True).parsed for name in names}
    with RunResources.from_settings(stack) as resources:
        processor = arriving_one_by_one(resources, names, parsed, wait_seconds=3600.0, expected=4, forgone=1)
    assert processor.batches == [3]


def test_without_a_wait_a_batch_is_what_waits_when_the_lane_is_free(stack: Settings, symbols) -> None:
    names = [symbols() for _ in range(3)]
    parsed = {name: collect(stack, name, *WEEK, keep_parsed=True).parsed for name in names}
    with RunResources.from_settings(stack) as resources:
        processor = arriving_one_by_one(resources, names, parsed, wait_seconds=0.0, expected=3)
    assert sum(processor.batches) == 3 and processor.batches[0] == 1  # the first did not wait


def test_a_processor_refuses_a_batch_size_below_one(stack: Settings) -> None:
    with RunResources.from_settings(stack) as resources, pytest.raises(ValueError, match="max_symbols 0"):
        PendingProcessor(resources, "polygon", "1min", "market_data", max_symbols=0)
    with RunResources.from_settings(stack) as resources, pytest.raises(ValueError, match="wait_seconds -1"):
        PendingProcessor(resources, "polygon", "1min", "market_data", wait_seconds=-1.0)


def test_a_symbols_series_of_two_timeframes_are_each_stored_once(stack: Settings, symbols) -> None:
    """Pending pages of one symbol in two timeframes (a processing stage without a timeframe
    filter): each series is processed on its own, nothing is written or dead-lettered twice."""
    name = symbols()
    collect(stack, name, *WEEK, timeframe="1min")
    collect(stack, name, *WEEK, timeframe="1day")
    with RunResources.from_settings(stack) as resources:
        done = process_bars_pending(resources, "polygon", [name], None)[name]
    by_count = sorted((outcome.inserted, outcome.accepted, outcome.error) for outcome, _ in done)
    assert by_count == [(5, 5, None), (1950, 1950, None)]
    with database_connection(stack) as conn:
        daily = conn.execute("SELECT count(*) FROM market.bars_daily WHERE symbol = %s", (name,)).fetchone()
        conn.execute("DELETE FROM market.bars_daily WHERE symbol = %s", (name,))
    assert len(stored(stack, [name])[name]) == 1950 and daily == (5,)
    assert not unprocessed(stack, [name])


def week_request(names: list[str]) -> IngestRequest:
    return parse_ingest_request(
        data_type="market_data", symbols=names, start_date=WEEK[0], end_date=WEEK[1], timeframe="1min", now=NOW
    )


def ingested_in_waves(
    resources: RunResources, waves: list[list[str]], process: Callable[[Batch], Outcomes]
) -> list[SymbolRun]:
    """The waves of an ``ingest`` run over the sandbox, one after the other as ``collect_all``
    runs them, sharing one processor whose batches ``process``."""
    request = week_request([name for wave in waves for name in wave])

    async def run() -> list[SymbolRun]:
        processor = PendingProcessor(resources, "polygon", "1min", "market_data", process=process)
        runs: list[SymbolRun] = []
        async with build_source("polygon", resources.settings) as source:
            for wave in waves:
                starts = {name: request.start for name in wave}
                runs += await symbol_wave_task.fn(
                    resources, source, request, wave, starts, "run", False, True, processor
                )
        return runs

    return asyncio.run(run())


def test_a_symbols_processing_error_is_its_outcome_and_later_waves_go_on(stack: Settings, symbols) -> None:
    """A processing error that is not a lost connection failed the wave and every wave after it
    (and, its page still pending, every run after). Now it is that symbol's outcome, its pages
    stay pending with the error, the run is partial, and the other symbols are stored."""
    first, bad, third, later = (symbols() for _ in range(4))

    def breaking(batch: Batch) -> Outcomes:
        broken = [(name, mistimed(kept or {}) if name == bad else kept) for name, kept in batch]
        return pending.process_batch(resources, "polygon", "1min", "market_data", broken)

    with RunResources.from_settings(stack) as resources:
        runs = ingested_in_waves(resources, [[first, bad, third], [later]], breaking)

    by_symbol = {r.collected.symbol: r for r in runs}
    assert sorted(by_symbol) == sorted([first, bad, third, later])
    ((failed, _),) = by_symbol[bad].processed
    assert failed.error is not None and "7sec" in failed.error
    for name in (first, third, later):
        ((outcome, _),) = by_symbol[name].processed
        assert outcome.error is None and outcome.inserted > 1500
    assert unprocessed(stack, [first, bad, third, later]) == {bad}
    with database_connection(stack) as conn:
        errors = conn.execute("SELECT DISTINCT process_error FROM ops.raw_pages WHERE symbol = %s", (bad,)).fetchall()
    assert errors == [(failed.error,)]
    summary = IngestSummary.of("run", week_request(list(by_symbol)), runs, None)
    assert summary.failed == [bad]
    assert run_metrics(summary, "ingest").status == "partial"


def test_pages_left_pending_with_an_error_are_marked_processed_once_processing_succeeds(
    stack: Settings, symbols
) -> None:
    """Corporate actions (like news, fundamentals, options) marked processed only the pages without
    an error, to spare those dead-lettered in the same transaction: a page left pending with the
    error of a failed processing was then processed again in every run."""
    name = symbols()
    assert collect(stack, name, "2021-01-01", "2024-06-28", data_type="corporate_actions").pages
    with database_connection(stack) as conn:
        conn.execute("UPDATE ops.raw_pages SET process_error = 'processing failed: earlier' WHERE symbol = %s", (name,))
    with RunResources.from_settings(stack) as resources:
        done = process_symbol_pending(resources, "polygon", name, None, "corporate_actions")
    assert done and all(outcome.error is None for outcome, _ in done)
    with database_connection(stack) as conn:
        left = conn.execute(
            "SELECT count(*) FROM ops.raw_pages "
            "WHERE symbol = %s AND (processed_at IS NULL OR process_error IS NOT NULL)",
            (name,),
        ).fetchone()
        conn.execute("DELETE FROM market.corporate_actions WHERE symbol = %s", (name,))
    assert left == (0,)


def test_the_process_stage_records_a_series_failure_and_processes_the_others(stack: Settings, symbols) -> None:
    """The ``process`` flow's stage (and an ingest run's leftovers) gathered a task per series: one
    series failing (its page's object gone from the lake) failed the stage, run after run."""
    good, gone = symbols(), symbols()
    collect(stack, good, *WEEK)
    lost = collect(stack, gone, *WEEK)
    with RunResources.from_settings(stack) as resources:
        resources.lake.delete(lost.raw_keys[0])
        batch = asyncio.run(pending.process_pending(resources, "polygon", [good, gone], "1min"))
    outcomes = {outcome.symbol: outcome for outcome in batch.outcomes}
    assert outcomes[good].error is None and outcomes[good].inserted > 1500
    assert outcomes[gone].error is not None and lost.raw_keys[0] in outcomes[gone].error
    assert unprocessed(stack, [good, gone]) == {gone}
    with database_connection(stack) as conn:
        errors = conn.execute("SELECT DISTINCT process_error FROM ops.raw_pages WHERE symbol = %s", (gone,)).fetchall()
    assert errors == [(outcomes[gone].error,)]
    assert run_metrics(pending.ProcessSummary.of("run", batch), "process").status == "partial"
