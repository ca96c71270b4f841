"""Shared by the fundamentals tests: their own symbols (cleaned before and after), the sandbox
read directly over HTTP (the oracle the stored data is checked against), the CLI's ingest."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from core.settings import Settings
from tests.support.cli import run_cli

# Symbols of the fundamentals tests alone (the sandbox serves tickers of up to 6 characters).
FUND_SYMBOLS = ("FNDA", "FNDB", "FNDC", "FNDD", "FNDE")
TABLES = (
    "market.financial_statements",
    "market.earnings",
    "market.corporate_actions",
    "market.bars_daily",
    "ops.watermarks",
    "ops.raw_pages",
    "features.bar_feature_values",
)


def wipe(conn: psycopg.Connection) -> None:
    """Delete every row of FUND_SYMBOLS the fundamentals tests write (conn: autocommit)."""
    for table in TABLES:
        conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (list(FUND_SYMBOLS),))  # type: ignore[arg-type]
    keys = [f"%/symbol={symbol}/%" for symbol in FUND_SYMBOLS]
    conn.execute("DELETE FROM ops.dead_letters WHERE payload_lake_key LIKE ANY(%s)", (keys,))


def sandbox_results(stack: Settings, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every result of a Polygon-shaped sandbox endpoint, following next_url."""
    response = httpx.get(f"{stack.sandbox.base_url}{path}", params={"apiKey": "test", **params}, timeout=30)
    out: list[dict[str, Any]] = []
    while True:
        body = response.json()
        assert response.status_code == 200 and "results" in body, (response.status_code, body)
        out += body["results"]
        if not body.get("next_url"):
            return out
        # httpx replaces a URL's query with `params`: the key goes on the cursor URL itself
        response = httpx.get(f"{body['next_url']}&apiKey=test", timeout=30)


def ingest(symbol: str, data_type: str, start: str, end: str, *extra: str) -> str:
    """``marketpipe ingest`` of one symbol; its output (asserting it succeeded)."""
    result = run_cli("ingest", "--symbols", symbol, "--start", start, "--end", end, "--data-type", data_type, *extra)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    return result.stdout
