"""News and posts through the real stack: two vendors and Reddit over HTTP from the sandbox into
the news store, stories measured against the sandbox's truth, updates, a kill -9 mid-ingest."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pandas as pd
import pytest

from core.settings import Settings
from db.connect import database_connection
from features.news_sentiment import NEWS_FEATURE_SET, bar_close_ns
from quality.dedup import pairwise_scores
from storage.news import read_news_features
from storage.scanners import news_sentiment, run_scan
from tests.support.news import ingest, sandbox_now, truth

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA", "JPM"]


@pytest.fixture(scope="module")
def news_window(stack: Settings) -> tuple[datetime, datetime]:
    end = sandbox_now(stack)
    return end - timedelta(days=120), end


@pytest.fixture(scope="module")
def ingested(stack: Settings, news_window) -> dict:
    start, end = news_window
    summaries = [ingest(source, "news", SYMBOLS, start, end) for source in ("polygon", "alpaca")]
    return {"summaries": summaries, "truth": truth(stack, SYMBOLS, start, end)}


def stored(stack: Settings) -> dict[tuple[str, str], dict]:
    with database_connection(stack) as conn:
        rows = conn.execute(
            "SELECT source, id, story_id, headline, sentiment, vendor_sentiment, symbols, updated_at, published_at"
            " FROM news.items WHERE kind = 'news'"
        ).fetchall()
    names = ("story_id", "headline", "sentiment", "vendor_sentiment", "symbols", "updated_at", "published_at")
    return {(r[0], r[1]): dict(zip(names, r[2:], strict=True)) for r in rows}


def test_both_vendors_are_stored_once_and_dedup_meets_the_truth(stack: Settings, ingested: dict) -> None:
    items = stored(stack)
    expected = {(t["source"], t["id"]) for t in ingested["truth"]["news"]}
    assert expected and expected <= set(items)
    assert all(not s["failed"] for s in ingested["summaries"])
    precision, recall = pairwise_scores(
        [(f"{t['source']}:{t['id']}", t["story"]) for t in ingested["truth"]["news"]],
        [(f"{s}:{i}", str(items[(s, i)]["story_id"])) for s, i in expected],
    )
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    with database_connection(stack) as conn:
        stories = dict(conn.execute("SELECT story_id, items FROM news.stories").fetchall())
    per_story = Counter(items[k]["story_id"] for k in items)
    assert {s: per_story[s] for s in per_story} == {s: stories[s] for s in per_story}  # aggregates agree


def test_every_item_has_our_sentiment_beside_the_vendors(stack: Settings, ingested: dict) -> None:
    items = stored(stack)
    assert all(v["sentiment"] is not None and -1 <= v["sentiment"] <= 1 for v in items.values())
    polygon = [v for (s, _), v in items.items() if s == "polygon"]
    assert polygon and all(v["vendor_sentiment"] is not None for v in polygon)  # Polygon's insights kept
    with database_connection(stack) as conn:
        links = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE vendor_label IS NOT NULL) FROM news.item_symbols"
            " WHERE source = 'polygon'"
        ).fetchone()
    assert links[0] > 0 and links[1] == links[0]


def test_a_rerun_changes_nothing(stack: Settings, ingested: dict, news_window) -> None:
    before = stored(stack)
    start, end = news_window
    summary = ingest("polygon", "news", SYMBOLS, start, end, incremental=False)
    assert sum(p["inserted"] + p["updated"] for p in summary["processed"]) == 0
    assert stored(stack) == before


def test_sentiment_features_of_daily_bars_are_point_in_time(stack: Settings, ingested: dict, news_window) -> None:
    start, end = news_window
    ingest("polygon", "market_data", ["NVDA"], start, end, timeframe="1day")
    ingest("polygon", "news", ["NVDA"], start, end, incremental=False)  # computes the features after storing
    with database_connection(stack) as conn:
        features = read_news_features(conn, ["NVDA"], "1day", start, end, NEWS_FEATURE_SET)
        links = conn.execute(
            "SELECT published_at, sentiment FROM news.item_symbols WHERE symbol = 'NVDA' AND kind = 'news'"
        ).fetchall()
    assert len(features) > 50 and features["news_count_72h"].sum() > 0
    published = pd.Series([p for p, _ in links])
    closes = pd.to_datetime(bar_close_ns(features["ts"], "1day"), utc=True)
    after_close_same_day = 0
    for close, count in zip(closes, features["news_count_24h"], strict=True):
        assert count == ((published > close - pd.Timedelta(hours=24)) & (published <= close)).sum()
        after_close_same_day += int(((published > close) & (published < close + pd.Timedelta(hours=8))).sum())
    assert after_close_same_day > 0  # evening news exists, and the counts above left it to the next bar


def test_the_news_sentiment_scanner_ranks_symbols_with_their_volume_z(
    stack: Settings, ingested: dict, news_window, marketpipe_cli
) -> None:
    _, end = news_window
    ingest("polygon", "market_data", ["TSLA"], end - timedelta(days=60), end, timeframe="1day")
    window_start = end - timedelta(days=30)
    with database_connection(stack) as conn:
        found = run_scan(conn, news_sentiment(24 * 30, "down", as_of=end, limit=50))
        both = run_scan(conn, news_sentiment(24 * 30, "both", as_of=end, limit=50))
        links = pd.DataFrame(
            conn.execute(
                "SELECT symbol, sentiment FROM news.item_symbols WHERE kind = 'news' AND sentiment IS NOT NULL"
                " AND published_at > %s AND published_at <= %s",
                (window_start, end),
            ).fetchall(),
            columns=["symbol", "sentiment"],
        )
        volumes = [
            float(v)
            for (v,) in conn.execute(
                "SELECT volume FROM market.bars_daily WHERE symbol = 'TSLA' AND timeframe = '1day' AND ts <= %s"
                " ORDER BY ts DESC LIMIT 21",
                (end,),
            ).fetchall()
        ]
    stats = links.groupby("symbol")["sentiment"].agg(["count", "mean"]).reset_index()
    negative = stats[stats["mean"] < 0].sort_values(["mean", "count", "symbol"], ascending=[True, False, True])
    assert len(negative) > 0 and list(found["symbol"]) == list(negative["symbol"])
    assert list(found["items"]) == list(negative["count"])
    assert found["sentiment"].tolist() == pytest.approx(negative["mean"].tolist())
    z = {s: v for s, v in zip(both["symbol"], both["volume_z"], strict=True)}
    history = pd.Series(volumes[1:])
    assert len(volumes) == 21 and z["TSLA"] == pytest.approx((volumes[0] - history.mean()) / history.std())
    assert list(both["symbol"]) == list(
        stats.assign(a=-stats["mean"].abs()).sort_values(["a", "count", "symbol"], ascending=[True, False, True])[
            "symbol"
        ]
    )
    assert all(pd.isna(v) for s, v in z.items() if s not in ("TSLA", "NVDA"))  # no bars stored: no z
    cli = marketpipe_cli(
        "scan", "news-sentiment", "--hours", str(24 * 30), "--direction", "down", "--as-of", end.isoformat(), "--json"
    )
    assert cli.returncode == 0, cli.stderr
    assert [r["symbol"] for r in json.loads(cli.stdout)] == list(negative["symbol"])
    refused = marketpipe_cli("scan", "news-sentiment", "--direction", "sideways")
    assert refused.returncode != 0 and "sideways" in refused.stderr and "Traceback" not in refused.stderr
