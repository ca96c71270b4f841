"""A user's own data source, not in the project, through the real Prefect flows.

The plugins are defined here, as a user would in their own package: seed-style ``BaseSource``
subclasses implementing only ``fetch_data``. They are registered the ways a user registers one:
by import path in the ``sources:`` setting (here as the flows' ``overrides``, what ``--set`` gives)
or by a ``marketpipe.sources`` entry point of an installed distribution. ``SP500Daily`` serves the
real S&P 500 daily OHLCV the ``arch`` package ships (2017-2018 here), under whatever ticker is
asked (each test asks for tickers of its own).

The settings-effect test measures ``collection.max_parallel_symbols`` and ``collection.batch_size``
at the source seam: the plugin logs when each symbol's fetch starts and ends (an order of events,
not times), and the waves and the concurrency are read off that log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import numpy as np
import pandas as pd
import psycopg
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from core import model
from core.errors import RequestError
from core.settings import Settings
from db.connect import async_database_connection
from flows.features_flow import features_flow
from flows.historical import historical_flow
from flows.ingestion import ingest_flow
from flows.pipeline_flow import pipeline_flow
from flows.processing import process_flow
from marketpipe.api import DataPipelineOrchestrator
from sources.base import BaseSource, SymbolRequest
from sources.dead_letters import list_dead_letters, replay_dead_letters
from sources.factory import build_source
from sources.http import Page, Request
from sources.registry import ENTRY_POINT_GROUP
from storage.lake import Lake
from tasks.collection import replay_dead_letter
from tests.support.stack import REPO

FIRST, LAST = "2017-01-03", "2018-12-31"
PLUGIN = "sp500"
JUNE_END = "2018-06-29T23:59:59"
PLUGIN_SETTINGS = {"sources": {PLUGIN: f"{__name__}:SP500Daily"}}


def sp500_session_bars(symbol: str, start: Any, end: Any, source: str) -> pd.DataFrame:
    """arch's S&P 500 days between ``start`` and ``end`` as canonical daily bars, stamped at
    midnight New York of each session (the model's convention for daily bars)."""
    from arch.data import sp500

    raw = sp500.load()
    sessions = pd.DatetimeIndex(raw.index).tz_localize(model.EXCHANGE_TZ).tz_convert("UTC")
    keep = (sessions >= model.to_utc(start)) & (sessions <= model.to_utc(end))
    raw, sessions = raw[keep], sessions[keep]
    return model.frame(
        model.BARS,
        {
            "symbol": symbol,
            "ts": sessions,
            "timeframe": "1day",
            "open": raw["Open"].to_numpy(float),
            "high": raw["High"].to_numpy(float),
            "low": raw["Low"].to_numpy(float),
            "close": raw["Close"].to_numpy(float),
            "volume": raw["Volume"].to_numpy(np.int64),
            "source": source,
        },
        what=f"{source} bars",
    )


class SP500Daily(BaseSource):
    """The S&P 500's real daily bars from arch, under the ticker asked for. A plugin may fail:
    ``failures`` says how many more fetches of a symbol raise (a vendor outage, as a plugin's own
    client would raise it: not a marketpipe error)."""

    failures: ClassVar[dict[str, int]] = {}

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any) -> pd.DataFrame:
        if SP500Daily.failures.get(symbol, 0) > 0:
            SP500Daily.failures[symbol] -= 1
            raise ConnectionError(f"upstream down for {symbol}")
        return sp500_session_bars(symbol, start_date, end_date, self.context.name)


class SP500Pages(BaseSource):
    """A plugin with pages of its own (one per request, arch's rows as its vendor would send them)
    and the parser that reads a stored page back: a pipeline's processing stage re-parses the raw
    zone with it."""

    def first_requests(self, wanted: SymbolRequest) -> list[Request]:
        if wanted.data_type != "market_data":
            return []  # bars only
        params = {"symbol": wanted.symbol, "start": wanted.start.isoformat(), "end": wanted.end.isoformat()}
        return [Request(self.context.name, "bars", "arch:sp500", params, {"symbol": wanted.symbol})]

    async def iter_pages(self, request: Request) -> AsyncIterator[Page]:
        bars = sp500_session_bars(request.params["symbol"], request.params["start"], request.params["end"], "-")
        days = bars["ts"].dt.tz_convert(model.EXCHANGE_TZ).dt.strftime("%Y-%m-%d")
        payload = [
            {"day": day, "o": o, "h": h, "l": low, "c": c, "v": int(v)}
            for day, o, h, low, c, v in zip(
                days, bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], strict=True
            )
        ]
        yield Page(request, self.page_parser(request)(payload), payload)

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any) -> pd.DataFrame:
        return sp500_session_bars(symbol, start_date, end_date, self.context.name)

    @classmethod
    def page_parser(cls, request: Request) -> Callable[[Any], pd.DataFrame]:
        def parse(payload: Any) -> pd.DataFrame:
            rows = pd.DataFrame.from_records(payload, columns=["day", "o", "h", "l", "c", "v"])
            sessions = pd.DatetimeIndex(pd.to_datetime(rows["day"])).tz_localize(model.EXCHANGE_TZ).tz_convert("UTC")
            columns = {"open": rows["o"], "high": rows["h"], "low": rows["l"], "close": rows["c"], "volume": rows["v"]}
            return model.frame(
                model.BARS,
                {"symbol": request.context["symbol"], "ts": sessions, "timeframe": "1day", "source": request.source}
                | {k: v.to_numpy() for k, v in columns.items()},
                what=f"{request.source} page",
            )

        return parse


class RecordingSource(BaseSource):
    """A short series per symbol; logs ("start"|"end", symbol) around each fetch, which awaits a
    little so that fetches allowed to overlap do."""

    log: ClassVar[list[tuple[str, str]]] = []

    async def fetch_data(self, symbol: str, start_date: Any, end_date: Any) -> pd.DataFrame:
        RecordingSource.log.append(("start", symbol))
        await asyncio.sleep(0.3)
        RecordingSource.log.append(("end", symbol))
        return sp500_session_bars(symbol, "2018-12-03", "2018-12-07", self.context.name)


def stored_bars(conn: psycopg.Connection, symbol: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT ts, open, high, low, close, volume, source FROM market.bars "
        "WHERE symbol = %s AND timeframe = '1day' ORDER BY ts",
        (symbol,),
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume", "source"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def assert_stored_equal(conn: psycopg.Connection, symbol: str, expected: pd.DataFrame) -> None:
    stored = stored_bars(conn, symbol)
    columns = ["ts", "open", "high", "low", "close", "volume", "source"]
    pd.testing.assert_frame_equal(
        stored.astype({"volume": "int64", "source": "object"}),
        expected[columns].astype({"ts": "datetime64[ns, UTC]", "source": "object"}).reset_index(drop=True),
        check_dtype=False,
    )


def artifacts_of(run_id: str) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]))
        )
    return {a.key: a for a in artifacts if a.key}


def test_a_plugin_from_the_settings_is_ingested_processed_and_featured_like_a_vendor(stack: Settings, conn, symbols):
    symbol = symbols()
    expected = sp500_session_bars(symbol, FIRST, f"{LAST}T23:59:59", PLUGIN)
    assert len(expected) == 502  # every NYSE session of 2017 and 2018

    summary = asyncio.run(
        ingest_flow(
            symbols=[symbol],
            start_date=FIRST,
            end_date=f"{LAST}T23:59:59",
            source=PLUGIN,
            overrides=PLUGIN_SETTINGS,
        )
    )

    assert summary["source"] == PLUGIN and summary["failed"] == []
    assert summary["processed"][0]["inserted"] == 502
    assert summary["quality_score"] == pytest.approx(1.0)
    assert_stored_equal(conn, symbol, expected)
    published = artifacts_of(summary["run_id"])
    assert published["quality-report"].description == "quality score 1.000"
    assert json.loads(published["ingestion-summary"].data)[0]["records"] == 502

    features = asyncio.run(
        features_flow(symbols=[symbol], timeframe="1day", start_date=FIRST, end_date=LAST, overrides=PLUGIN_SETTINGS)
    )
    assert features["inserted"] == 502
    rets = conn.execute(
        "SELECT ret FROM features.bar_features WHERE symbol = %s AND timeframe = '1day' ORDER BY ts", (symbol,)
    ).fetchall()
    # the returns of the closes as stored: to 1/10,000 dollar (the data's 6 decimals are float noise)
    stored_close = expected["close"].round(4)
    np.testing.assert_allclose(
        np.array([r[0] for r in rets], dtype=float)[1:], stored_close.pct_change().to_numpy()[1:], rtol=1e-9
    )


def test_pipeline_source_may_name_a_plugin_and_gap_repair_refetches_from_it(stack: Settings, conn, symbols):
    symbol = symbols()
    lookback = (datetime.now(UTC).date() - date.fromisoformat(FIRST)).days
    overrides = {
        **PLUGIN_SETTINGS,
        "pipeline": {
            "source": PLUGIN,
            "symbols": [symbol],
            "bars": [{"timeframe": "1day", "lookback_days": lookback}],
            "corporate_actions": True,  # a bars plugin has none: asked nothing, not an error
        },
    }
    expected = sp500_session_bars(symbol, FIRST, f"{LAST}T23:59:59", PLUGIN)

    summary = asyncio.run(
        pipeline_flow(stages=["ingestion", "processing", "features"], mode="batch", overrides=overrides)
    )

    assert summary["records_stored"] >= 502
    assert_stored_equal(conn, symbol, expected)
    assert conn.execute("SELECT count(*) FROM features.bar_features WHERE symbol = %s", (symbol,)).fetchone()[0] == 502

    conn.execute(
        "DELETE FROM market.bars_daily WHERE symbol = %s AND ts >= '2018-03-01' AND ts < '2018-04-01'", (symbol,)
    )
    assert len(stored_bars(conn, symbol)) == 502 - 21  # March 2018: 21 sessions
    repaired = asyncio.run(
        historical_flow(
            symbols=[symbol], start_date=FIRST, end_date=LAST, timeframe="1day", source=PLUGIN, overrides=overrides
        )
    )
    assert repaired["symbol_sessions"] == 21 and repaired["remaining_symbol_sessions"] == 0
    assert_stored_equal(conn, symbol, expected)


def test_a_plugin_with_pages_of_its_own_is_processed_from_the_raw_zone_by_the_pipeline(stack: Settings, conn, symbols):
    symbol = symbols()
    start = date(2018, 12, 3)
    overrides = {
        "sources": {"sp500pages": f"{__name__}:SP500Pages"},
        "pipeline": {
            "source": "sp500pages",
            "symbols": [symbol],
            "bars": [{"timeframe": "1day", "lookback_days": (datetime.now(UTC).date() - start).days}],
        },
    }

    # the ingestion stage stores the pages; the processing stage reads them back and parses them
    summary = asyncio.run(pipeline_flow(stages=["ingestion", "processing"], mode="batch", overrides=overrides))

    expected = sp500_session_bars(symbol, start.isoformat(), f"{LAST}T23:59:59", "sp500pages")
    assert summary["records_stored"] == len(expected) == 19  # December 2018 from the 3rd
    assert_stored_equal(conn, symbol, expected)


def test_a_plugin_is_refused_nowhere_but_an_unknown_name_is_refused_before_any_run(stack: Settings, conn, symbols):
    symbol = symbols()
    orchestrator = DataPipelineOrchestrator(overrides=PLUGIN_SETTINGS)

    result = asyncio.run(
        orchestrator.run_ingestion(symbols=[symbol], start_date="2018-06-01", end_date=JUNE_END, source=PLUGIN)
    )

    assert result["processed"][0]["inserted"] == 21
    assert_stored_equal(conn, symbol, sp500_session_bars(symbol, "2018-06-01", JUNE_END, PLUGIN))
    with pytest.raises(RequestError, match=r"unknown source 'sp501'.*sp500.*register a plugin"):
        asyncio.run(
            orchestrator.run_ingestion(symbols=[symbol], start_date="2018-06-01", end_date="2018-06-29", source="sp501")
        )
    with pytest.raises(RequestError, match=r"unknown source 'sp501'.*sp500"):
        asyncio.run(
            historical_flow(
                symbols=[symbol],
                start_date="2018-06-01",
                end_date="2018-06-29",
                source="sp501",
                overrides=PLUGIN_SETTINGS,
            )
        )
    with pytest.raises(RequestError, match=r"unknown source 'sp501'.*sp500"):
        asyncio.run(pipeline_flow(stages=["ingestion"], overrides={**PLUGIN_SETTINGS, "pipeline": {"source": "sp501"}}))


def test_the_cli_ingests_from_a_plugin_set_on_its_command_line(stack: Settings, conn, symbols, marketpipe_cli):
    symbol = symbols()
    plugin = f"sources.{PLUGIN}={__name__}:SP500Daily"
    args = ["--symbols", symbol, "--start", "2018-06-01", "--end", "2018-06-29", "--source", PLUGIN]

    result = marketpipe_cli("--set", plugin, "ingest", *args, env={"PYTHONPATH": str(REPO)})

    assert result.returncode == 0, result.stderr[-3000:]
    assert "fetched 21 records, stored 21 (0 rejected)" in result.stdout
    assert_stored_equal(conn, symbol, sp500_session_bars(symbol, "2018-06-01", JUNE_END, PLUGIN))


def test_a_failing_plugin_fetch_is_dead_lettered_and_replay_asks_the_plugin_again(
    stack: Settings, conn, symbols
) -> None:
    symbol = symbols()
    SP500Daily.failures[symbol] = 1
    window = {"start_date": "2018-09-04", "end_date": "2018-09-28T23:59:59"}

    first = asyncio.run(ingest_flow(symbols=[symbol], source=PLUGIN, overrides=PLUGIN_SETTINGS, **window))

    assert first["failed"] == [symbol] and "upstream down" in first["collected"][0]["error"]
    assert len(stored_bars(conn, symbol)) == 0
    settings = stack.model_copy(update={"sources": PLUGIN_SETTINGS["sources"]})

    async def replay() -> Any:
        async with await async_database_connection(settings, autocommit=True) as aconn:
            letters = [
                letter
                for letter in await list_dead_letters(aconn, source=PLUGIN)
                if letter.request["params"]["symbol"] == symbol
            ]
            assert len(letters) == 1 and "ConnectionError: upstream down" in letters[0].error
            source = build_source(PLUGIN, settings)  # what `marketpipe dlq replay` does

            async def fetcher(letter) -> None:
                await replay_dead_letter(source, letter, Lake.from_settings(settings.lake), aconn, "replay-test")

            return await replay_dead_letters(aconn, fetcher, source=PLUGIN)

    replayed = asyncio.run(replay())
    assert len(replayed.replayed) >= 1 and replayed.failed == []

    processed = asyncio.run(process_flow(source=PLUGIN, symbols=[symbol], overrides=PLUGIN_SETTINGS))
    assert processed["symbols"][0]["inserted"] == 19  # September 2018: 19 sessions
    assert_stored_equal(conn, symbol, sp500_session_bars(symbol, "2018-09-04", "2018-09-28T23:59:59", PLUGIN))


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``RecordingSource`` registered as an installed distribution's entry point, the way a
    user's ``pip install`` of their source package registers it."""
    dist = tmp_path / "recording_source-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recording-source\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nrecording = {__name__}:RecordingSource\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    RecordingSource.log.clear()
    yield "recording"
    RecordingSource.log.clear()


def waves_and_concurrency(log: list[tuple[str, str]], waves: list[list[str]]) -> tuple[int, bool]:
    """The most fetches running at once, and whether each wave started only after the one
    before it had ended."""
    running = most = 0
    position = {event: i for i, event in enumerate(log)}
    for kind, _ in log:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    in_order = all(
        max(position[("end", s)] for s in before) < min(position[("start", s)] for s in after)
        for before, after in pairwise(waves)
    )
    return most, in_order


@pytest.mark.parametrize(("max_parallel", "batch_size"), [(2, 3), (3, 7)])
def test_collection_runs_waves_of_batch_size_at_most_max_parallel_symbols_at_once(
    stack: Settings, symbols, installed_plugin: str, max_parallel: int, batch_size: int
) -> None:
    names = [symbols() for _ in range(7)]
    overrides = {"collection": {"max_parallel_symbols": max_parallel, "batch_size": batch_size}}

    asyncio.run(
        ingest_flow(
            symbols=names,
            start_date="2018-12-03",
            end_date="2018-12-07T23:59:59",
            source=installed_plugin,
            overrides=overrides,
        )
    )

    log = RecordingSource.log
    assert sorted(s for kind, s in log if kind == "start") == sorted(names)  # one fetch per symbol
    waves = [names[i : i + batch_size] for i in range(0, len(names), batch_size)]
    most, in_order = waves_and_concurrency(log, waves)
    assert most == max_parallel  # the gate is reached, never exceeded
    assert in_order  # no symbol of a wave starts before every symbol of the wave before it ended
    if batch_size < len(names):
        # a wave is exactly batch_size symbols: the first of the next wave does not start early
        # even though the gate had room as soon as the wave's last symbols were running
        wider = [names[: batch_size + 1], names[batch_size + 1 :]]
        assert not waves_and_concurrency(log, wider)[1]
