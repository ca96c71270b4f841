"""The options deployment's flow on the real Prefect server: skipped on a holiday, a snapshot on a
trading day."""

from __future__ import annotations

import asyncio

from flows.options import SKIPPED, options_flow
from tests.support.options import forget_options, stored_quotes

SYMBOL = "OPTQD"


def test_a_holiday_run_is_skipped_with_its_reason(stack) -> None:
    state = asyncio.run(options_flow(symbols=[SYMBOL], day="2026-12-25", return_state=True))
    assert state.is_completed() and state.name == SKIPPED
    assert state.message == "market closed: NYSE holiday (Friday 2026-12-25); no option chains to snapshot"


def test_a_trading_day_run_stores_the_snapshot(stack, conn) -> None:
    forget_options(conn, SYMBOL)
    try:
        summary = asyncio.run(options_flow(symbols=[SYMBOL], day="2026-12-04"))
        assert summary["data_type"] == "options" and summary["failed"] == []
        quotes = stored_quotes(conn, SYMBOL)
        assert len(quotes) == summary["collected"][0]["records"] > 0 and quotes["iv"].notna().any()
    finally:
        forget_options(conn, SYMBOL)


def test_the_cli_takes_a_snapshot_and_says_what_it_stored(stack, conn, marketpipe_cli) -> None:
    symbol = "OPTQE"
    forget_options(conn, symbol)
    try:
        result = marketpipe_cli("options", "ingest", "--symbols", symbol, timeout=300)
        assert result.returncode == 0, result.stderr
        stored = len(stored_quotes(conn, symbol))
        assert stored > 0 and f"fetched {stored:,} contracts, stored {stored:,} (0 refused)" in result.stdout
        refused = marketpipe_cli("options", "ingest", "--symbols", symbol, "--source", "yahoo")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "source 'yahoo' serves no options: use --source polygon" in refused.stderr
        unknown = marketpipe_cli("options", "ingest", "--symbols", "ZZZOPT", timeout=300)
        assert unknown.returncode == 0 and "fetched 0 contracts, stored 0" in unknown.stdout
        assert "no option contracts served for ZZZOPT: polygon lists no options on this underlying" in unknown.stderr
    finally:
        forget_options(conn, symbol)
