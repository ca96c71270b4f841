"""Contracts that cannot be stored: a real sandbox page with some records spoiled goes through the
processing stage on the real database; the spoiled ones become one dead letter with a reason each,
the rest are stored, nothing of the spoiled ones is."""

from __future__ import annotations

import copy

import httpx
import pandas as pd

from core.settings import Settings
from db.connect import database_connection
from sources.polygon.parsing import parse_option_chain
from tasks.collection import ParsedPage
from tasks.options import process_symbol_options
from tasks.processing import PendingPage
from tests.support.options import forget_options, stored_quotes

SYMBOL = "OPTQC"


def sandbox_page(stack: Settings) -> dict:
    url = f"{stack.sandbox.base_url}/v3/snapshot/options/{SYMBOL}"
    response = httpx.get(url, params={"apiKey": "sandbox", "limit": 40}, timeout=30)
    response.raise_for_status()
    return response.json()


def spoil(payload: dict) -> dict:
    bad = copy.deepcopy(payload)
    results = bad["results"]
    results[0]["details"]["ticker"] = "O:NOT-A-SYMBOL"
    results[1]["underlying_asset"]["ticker"] = "MSFT"
    results[2]["details"]["expiration_date"] = "2020-01-17"
    results[2]["details"]["ticker"] = f"O:{SYMBOL}200117{results[2]['details']['ticker'][-9:]}"
    results[3]["last_quote"]["bid"] = -0.05
    results[4]["last_trade"]["price"] = 0
    return bad


def test_spoiled_contracts_are_dead_letters_with_reasons_and_the_rest_is_stored(stack, conn, lake):
    forget_options(conn, SYMBOL)
    payload = spoil(sandbox_page(stack))
    frame = parse_option_chain(payload, underlying=SYMBOL)
    key = f"test/options/{SYMBOL}.json"
    page = PendingPage(key, "polygon", "option_snapshots", SYMBOL, None, pd.Timestamp.now().date(), "spoiled")
    conn.execute(  # pending, as the collection lists it: processing stores the pages it claims
        "INSERT INTO ops.raw_pages (key, source, dataset, symbol, data_date, records, checksum) "
        "VALUES (%s, 'polygon', 'option_snapshots', %s, %s, %s, 'spoiled')",
        (key, SYMBOL, page.data_date, len(frame)),
    )
    request = {"path": f"/v3/snapshot/options/{SYMBOL}", "params": {"limit": 40}, "context": {"symbol": SYMBOL}}
    spoiled = {r["details"]["ticker"] for r in payload["results"][:5]}
    try:
        with database_connection(stack) as sync:
            outcome = process_symbol_options(sync, lake, [page], stack.options, {key: ParsedPage(request, frame)})
            sync.commit()
        assert (outcome.records, outcome.accepted, outcome.rejected) == (40, 35, 5)
        stored = stored_quotes(conn, SYMBOL)
        assert len(stored) == 35 and not spoiled & set(stored["contract"])
        contracts = conn.execute(
            "SELECT contract FROM market.option_contracts WHERE contract = ANY(%s)", (list(spoiled),)
        ).fetchall()
        assert contracts == []
        letter = conn.execute(
            "SELECT error, payload FROM ops.dead_letters WHERE payload->>'raw_key' = %s AND resolved_at IS NULL", (key,)
        ).fetchone()
        assert letter is not None and letter[0].startswith(f"5 option contract(s) of {SYMBOL} refused")
        reasons = " | ".join(r["reason"] for r in letter[1]["rejected"])
        for expected in (
            "OCC symbol O:NOT-A-SYMBOL does not parse",
            "is of underlying MSFT",
            "expired on 2020-01-17",
            "bid -0.05 is not a price: it must be 0 or more",
            "last_price 0.0 is not a price: it must be more than 0",
        ):
            assert expected in reasons
    finally:
        conn.execute("DELETE FROM ops.dead_letters WHERE payload->>'raw_key' = %s", (key,))
        conn.execute("DELETE FROM ops.raw_pages WHERE key = %s", (key,))
        forget_options(conn, SYMBOL)
