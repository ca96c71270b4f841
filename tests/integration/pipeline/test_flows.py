"""The batch pipeline end to end on the real stack and its market sandbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from core.calendar import nyse_sessions
from core.errors import RequestError
from core.settings import Settings
from db.connect import database_connection
from flows.historical import historical_flow
from flows.ingestion import ingest_flow
from flows.processing import process_flow
from pipeline.request import parse_ingest_request
from sources.factory import build_source
from storage.lake import Lake
from storage.raw import store_raw_page
from tasks.collection import collect_symbol


def bar_count(stack: Settings, symbols: list[str], timeframe: str = "1min") -> int:
    with database_connection(stack) as conn:
        return conn.execute(
            "SELECT count(*) FROM market.bars WHERE symbol = ANY(%s) AND timeframe = %s", (symbols, timeframe)
        ).fetchone()[0]


def sandbox_requests(stack: Settings) -> int:
    stats = httpx.get(f"{stack.sandbox.base_url}/_sandbox/stats").json()
    return sum(v["total"] for v in stats["vendors"].values())


def ingest(**kwargs):
    args = {"start_date": "2024-03-04", "end_date": "2024-03-06T23:59:59", "timeframe": "1min"}
    return asyncio.run(ingest_flow(**{**args, **kwargs}))


def test_ingest_stores_every_session_once_and_a_rerun_fetches_nothing(stack: Settings) -> None:
    first = ingest(symbols=["FLA", "FLB"])
    expected = 3 * 390  # three full sessions of minute bars per symbol
    assert [p["inserted"] for p in first["processed"]] == [expected, expected]
    assert first["quality_score"] == pytest.approx(1.0)
    assert bar_count(stack, ["FLA", "FLB"]) == 2 * expected

    requests_before = sandbox_requests(stack)
    again = ingest(symbols=["FLA", "FLB"])
    assert again["collected"] == [] and sorted(again["up_to_date"]) == ["FLA", "FLB"]
    assert sandbox_requests(stack) == requests_before  # nothing was fetched
    assert bar_count(stack, ["FLA", "FLB"]) == 2 * expected

    full = ingest(symbols=["FLA"], incremental=False)  # refetch everything: the upsert changes nothing
    assert full["processed"][0]["unchanged"] == expected and full["processed"][0]["inserted"] == 0
    assert bar_count(stack, ["FLA"]) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"symbols": ["FLC"], "start_date": "2024-03-06", "end_date": "2024-03-04"},
        {"symbols": ["FLC"], "end_date": "2099-01-01"},
        {"symbols": ["FLC"], "timeframe": "7min"},
        {"symbols": ["FLC"], "data_type": "tweets"},
        {"symbols": []},
        {"symbols": ["FLC; DROP TABLE market.bars_intraday"]},
    ],
)
def test_bad_requests_fail_before_any_request_or_write(stack: Settings, kwargs: dict) -> None:
    before = sandbox_requests(stack)
    with pytest.raises(RequestError):
        ingest(**kwargs)
    assert sandbox_requests(stack) == before
    assert bar_count(stack, ["FLC"]) == 0


def test_a_failing_symbol_does_not_stop_the_others_and_is_retried_next_run(stack: Settings) -> None:
    control = f"{stack.sandbox.base_url}/_sandbox/faults"
    httpx.post(control, json={"seed": 3, "killed_symbols": ["FLDEAD"]}).raise_for_status()
    try:
        first = ingest(symbols=["FLDEAD", "FLOK"])
    finally:
        httpx.delete(control)
    assert first["failed"] == ["FLDEAD"]
    assert bar_count(stack, ["FLOK"]) == 3 * 390
    assert bar_count(stack, ["FLDEAD"]) == 0

    second = ingest(symbols=["FLDEAD", "FLOK"])  # the vendor is back: only the failed symbol is fetched
    assert [c["symbol"] for c in second["collected"]] == ["FLDEAD"]
    assert bar_count(stack, ["FLDEAD"]) == 3 * 390


def write_raw_page(stack: Settings, symbol: str, bars: list[dict]) -> None:
    """A vendor page as received (Polygon aggregates), stored and listed for processing."""
    lake = Lake.from_settings(stack.lake)
    request = {
        "url": f"/v2/aggs/ticker/{symbol}/range/1/minute/2024-03-04/2024-03-04",
        "params": {},
        "context": {"symbol": symbol, "timeframe": "1min"},
    }
    payload = {"ticker": symbol, "status": "OK", "resultsCount": len(bars), "results": bars}
    stored = store_raw_page(
        lake,
        source="polygon",
        dataset="bars",
        symbol=symbol,
        data_date=datetime(2024, 3, 4).date(),
        request=request,
        payload=payload,
    )
    with database_connection(stack) as conn:
        conn.execute(
            "INSERT INTO ops.raw_pages (key, source, dataset, symbol, timeframe, data_date, records, checksum) "
            "VALUES (%s, 'polygon', 'bars', %s, '1min', '2024-03-04', %s, %s)",
            (stored.key, symbol, len(bars), stored.checksum),
        )
        conn.commit()


def minute_bars(n: int, *, bad: set[int] = frozenset()) -> list[dict]:
    open_ms = int(datetime(2024, 3, 4, 14, 30, tzinfo=UTC).timestamp() * 1000)
    bars = []
    for i in range(n):
        price = 100 + 0.01 * i
        high, low = (price - 1, price + 1) if i in bad else (price + 0.05, price - 0.05)  # bad: high < low
        bars.append(
            {"t": open_ms + 60_000 * i, "o": price, "h": high, "l": low, "c": price, "v": 1000, "n": 5, "vw": price}
        )
    return bars


@pytest.mark.parametrize(
    ("mode", "symbol", "stored", "quarantined"), [("strict", "QSTR", 388, 2), ("lenient", "QLEN", 390, 0)]
)
def test_invalid_records_are_quarantined_in_strict_and_flagged_in_lenient_mode(
    stack: Settings, mode: str, symbol: str, stored: int, quarantined: int
) -> None:
    write_raw_page(stack, symbol, minute_bars(390, bad={10, 20}))
    result = asyncio.run(
        process_flow(source="polygon", symbols=[symbol], overrides={"quality": {"validation_mode": mode}})
    )
    assert result["symbols"][0]["rejected"] == quarantined
    assert bar_count(stack, [symbol]) == stored
    with database_connection(stack) as conn:
        flagged = conn.execute(
            "SELECT count(*) FROM market.bars WHERE symbol = %s AND quality_flags <> 0", (symbol,)
        ).fetchone()[0]
        letters = conn.execute(
            "SELECT payload FROM ops.dead_letters WHERE request->'context'->>'symbol' = %s AND resolved_at IS NULL",
            (symbol,),
        ).fetchall()
    assert flagged == (2 if mode == "lenient" else 0)
    if quarantined:
        payload = letters[0][0] if isinstance(letters[0][0], dict) else json.loads(letters[0][0])
        assert payload["records"] == quarantined
        assert {r["reason"] for r in payload["rejected"]} == {"ohlc_inconsistent"}
    else:
        assert letters == []


def test_historical_stage_refetches_exactly_the_missing_sessions(stack: Settings) -> None:
    ingest(symbols=["FLGAP"])
    with database_connection(stack) as conn:
        conn.execute(
            "DELETE FROM market.bars_intraday WHERE symbol = 'FLGAP' "
            "AND ts >= '2024-03-05 05:00+00' AND ts < '2024-03-06 05:00+00'"
        )  # the 5th
        conn.execute(
            "DELETE FROM market.bars_intraday WHERE symbol = 'FLGAP' AND ts >= '2024-03-06 15:00+00' "
            "AND ts < '2024-03-06 15:10+00'"
        )  # 10 minutes of the 6th
        conn.commit()
    assert bar_count(stack, ["FLGAP"]) == 3 * 390 - 390 - 10

    repaired = asyncio.run(
        historical_flow(symbols=["FLGAP"], start_date="2024-03-04", end_date="2024-03-06", timeframe="1min")
    )
    assert repaired["symbol_sessions"] == 2  # the 5th (empty) and the 6th (10 bars short)
    assert repaired["remaining_symbol_sessions"] == 0
    assert bar_count(stack, ["FLGAP"]) == 3 * 390
    assert len(nyse_sessions("2024-03-04", "2024-03-06")) == 3


def test_collect_uses_unadjusted_prices(stack: Settings) -> None:
    request = parse_ingest_request(
        data_type="market_data",
        symbols=["FLRAW"],
        start_date="2024-03-04",
        end_date="2024-03-04T23:59:59",
        timeframe="1min",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    source = build_source("polygon", stack)
    from tasks.collection import first_requests

    first = first_requests(source, request, "FLRAW", request.start)
    asyncio.run(source.aclose())
    assert first is not None and first[0].params["adjusted"] == "false"
    assert collect_symbol is not None
