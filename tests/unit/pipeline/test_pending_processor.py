"""The processor of a run's collected symbols (tasks.pending.PendingProcessor) never strands a
symbol, and a batch's failure reaches only the symbols it concerns (tasks.pending.batch_outcomes)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

import pytest

from tasks.batches import Batch, Outcomes, Processed
from tasks.collection import ParsedPage
from tasks.pending import PendingProcessor, batch_outcomes


def nothing_pending(batch: Batch) -> Outcomes:
    return [[] for _ in batch]


def processor(process=nothing_pending, **options) -> PendingProcessor:
    return PendingProcessor(None, "polygon", "1min", "market_data", process=process, **options)  # type: ignore[arg-type]


def test_a_symbol_submitted_as_the_last_lane_finishes_is_processed() -> None:
    """The lane finishes in the loop step that resolves its last symbol; a collection ending in the
    next step submits another. The lane must already be gone then, or the new symbol sees every
    lane still there, starts none, and waits for ever."""

    async def scenario() -> list[Processed]:
        pending = processor(max_symbols=1, lanes=1)
        first = await pending.submit("A")

        async def collected_meanwhile() -> asyncio.Future[list[Processed]]:
            while not first.done():
                await asyncio.sleep(0)
            return await pending.submit("C")

        late = await asyncio.create_task(collected_meanwhile())
        await first
        return await asyncio.wait_for(late, 10)

    assert asyncio.run(scenario()) == []


def test_callers_of_a_cancelled_batch_are_cancelled_not_left_waiting() -> None:
    release = threading.Event()

    def blocked(batch: Batch) -> Outcomes:
        release.wait(10)
        return nothing_pending(batch)

    async def scenario() -> asyncio.Future[list[Processed]]:
        pending = processor(blocked, max_symbols=4, lanes=1)
        future = await pending.submit("A")
        await asyncio.sleep(0.05)  # the lane is in its thread
        for lane in list(pending._lanes):
            lane.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        release.set()
        return future

    future = asyncio.run(scenario())
    assert future.cancelled()


class CommittingEachSymbol:
    """Processes symbols one after the other, each committed on its own; ``failing`` raises."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.committed: list[str] = []
        self.calls: list[list[str]] = []

    def __call__(self, symbols: Sequence[str], parsed: Mapping[str, ParsedPage]) -> dict[str, list[Processed]]:
        self.calls.append(list(symbols))
        done: dict[str, list[Processed]] = {}
        for symbol in symbols:
            if symbol == self.failing:
                raise ValueError(f"{symbol}: bad page")
            if symbol not in self.committed:  # a second pass finds nothing pending
                self.committed.append(symbol)
                done[symbol] = [(symbol, None)]  # type: ignore[list-item]
            else:
                done[symbol] = []
        return done


BATCH: Batch = [("A", None), ("B", None), ("C", None)]


def test_data_committed_a_series_at_a_time_is_processed_a_symbol_at_a_time() -> None:
    """A batch of corporate actions failing at B after A committed would leave A nothing pending
    when processed again alone: A's outcome must be the one that committed."""
    process = CommittingEachSymbol(failing="B")
    outcomes = batch_outcomes("corporate_actions", BATCH, process)
    assert outcomes[0] == [("A", None)] and outcomes[2] == [("C", None)]
    assert isinstance(outcomes[1], ValueError)
    assert process.calls == [["A"], ["B"], ["C"]]


def test_a_failed_bar_batch_is_processed_again_a_symbol_at_a_time() -> None:
    """Bars commit once for the whole batch (the fake rolls nothing back: it stands for the
    transaction that did), then each symbol alone: the error reaches B only."""

    class OneTransaction(CommittingEachSymbol):
        def __call__(self, symbols: Sequence[str], parsed: Mapping[str, ParsedPage]) -> dict[str, list[Processed]]:
            if len(symbols) > 1 and self.failing in symbols:
                self.calls.append(list(symbols))
                raise ValueError(f"{self.failing}: bad page")  # the batch's transaction rolled back
            return super().__call__(symbols, parsed)

    process = OneTransaction(failing="B")
    outcomes = batch_outcomes("market_data", BATCH, process)
    assert outcomes[0] == [("A", None)] and outcomes[2] == [("C", None)]
    assert isinstance(outcomes[1], ValueError)
    assert process.calls == [["A", "B", "C"], ["A"], ["B"], ["C"]]


@pytest.mark.parametrize("lanes", [1, 2])
def test_every_submitted_symbol_is_processed_once(lanes: int) -> None:
    seen: list[str] = []

    def record(batch: Batch) -> Outcomes:
        seen.extend(symbol for symbol, _ in batch)
        return nothing_pending(batch)

    async def scenario() -> None:
        pending = processor(record, max_symbols=3, lanes=lanes)
        futures = []
        for i in range(20):
            futures.append(await pending.submit(f"S{i}"))
            if i % 4 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*futures), 10)

    asyncio.run(scenario())
    assert sorted(seen) == sorted(f"S{i}" for i in range(20))
