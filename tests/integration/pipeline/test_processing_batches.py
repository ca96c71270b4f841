"""Collected symbols processed in batches (``tasks.pending.PendingProcessor``): a batch stores and
reports exactly what processing each symbol alone does, and one symbol's failure reaches that
symbol alone. Pages come from the stack's market sandbox over HTTP; the real database and lake."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable, Iterator

import pytest

from core.settings import Settings
from db.connect import database_connection
from tasks.batches import process_bars_pending
from tasks.collection import ParsedPage
from tasks.pending import PendingProcessor, process_symbol_pending
from tasks.resources import RunResources
from tests.support.collection import collect

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
    broken = {
        key: ParsedPage(page.request, page.frame.assign(timeframe="7sec"), page.served_at)
        for key, page in parsed[names[1]].items()
    }
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
