"""The intraday flow on a closed day: a Completed run named "Skipped" that says why, on the real server."""

from flows.intraday import SKIPPED, intraday_flow


def test_intraday_run_on_thanksgiving_is_skipped(stack) -> None:
    import asyncio

    state = asyncio.run(intraday_flow(day="2026-11-26", return_state=True))
    assert state.is_completed()
    assert state.name == SKIPPED
    assert state.message == "market closed: NYSE holiday (Thursday 2026-11-26); nothing to ingest"
