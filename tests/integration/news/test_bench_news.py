"""A smoke run of ``marketpipe bench news`` at a tiny size: every promised figure is there and is a
number (no timing asserted); dedup and sentiment are measured against the sandbox's truth."""

from __future__ import annotations

import json
import math

from core.settings import Settings


def test_bench_news_reports_every_figure(stack: Settings, marketpipe_cli) -> None:
    run = marketpipe_cli("bench", "news", "--symbols", "6", "--days", "60", "--batch", "50", "--json", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["items"] > 20 and report["stories_found"] > 0
    for key in ("items_per_s", "seconds", "client_cpu_seconds", "dedup_precision", "dedup_recall"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    # two batches stored at once, as the flow's processor runs them; the process's CPU over the wall time
    assert report["lanes"] == 2
    # (within the rounding of the reported seconds: a tiny run takes ~0.2 s)
    assert abs(report["client_cores"] - report["client_cpu_seconds"] / report["seconds"]) < 0.02
    # the flows' last step finds no vector owed: each batch's vectors' transaction paid its own
    assert report["vector_check"]["stories_embedded"] == 0 and report["vector_check"]["owed_after"] == 0
    # the database's share, read from its backends on this machine
    assert report["server_cpu_seconds"] >= 0 and report["total_cores"] >= report["client_cores"]
    assert 0 <= report["sentiment_accuracy"] <= 1 and 0 <= report["vendor_sentiment_accuracy"] <= 1
    assert set(report["stage_seconds"]) == {"prepare", "dedup", "embedding", "store"}
    assert set(report["stage_cpu_seconds"]) == set(report["stage_seconds"])
    assert all(math.isfinite(v) and v >= 0 for v in report["stage_cpu_seconds"].values())
    assert report["stage_cpu_seconds"]["prepare"] > 0
    assert report["hypertable_chunks"]["news.items"] >= 1 and report["hypertable_chunks"]["news.item_symbols"] >= 1
    embedding = report["embedding"]
    assert embedding["present"] == (embedding["absent_reason"] is None)
    assert "quality_vs_minilm" in embedding  # None for MiniLM itself, a recall@10 for another model
    if embedding["present"]:  # the model on real news with human ratings (the Lee set)
        humans = embedding["similarity_vs_humans"]
        assert humans["documents"] == 50 and humans[embedding["model"]]["pairs"] == 1225
        assert 0 < humans[embedding["model"]]["pearson"] <= 1
        leads = embedding["lead_to_body"][embedding["model"]]  # first sentences of real articles find them
        assert leads["articles"] > 300 and 0 <= leads["rank_1"] <= leads["mrr"] <= 1
        searched = embedding["headline_search"]  # each unique headline as a query against the stored vectors
        assert 0 < searched["queries"] <= searched["stories"] <= report["stories_found"]
        for way in ("with_ticker_lift", "plain"):
            # its own story is about its tickers: found first, the first hit is about them
            assert 0 <= searched[way]["rank_1"] <= searched[way]["same_symbol_at_1"] <= 1
    assert embedding["present"] == (report["stage_items_per_s"]["embedding"] is not None)
    assert set(report["targets"]) == {"items_per_s", "dedup_precision", "dedup_recall"}
    assert report["targets_met"] == all(t["met"] for t in report["targets"].values())
    assert len(report["load_avg_1m"]) == 2
    assert report["targets"]["items_per_s"]["with_model"] == embedding["model"]


def test_without_the_default_models_the_items_per_second_target_is_not_met(stack: Settings, marketpipe_cli) -> None:
    """The rate without embedding is reported, but the target is the default models' rate."""
    args = ("bench", "news", "--symbols", "3", "--days", "20", "--batch", "50", "--no-embed", "--json")
    run = marketpipe_cli(*args, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["items_per_s"] > 0 and report["embedding"]["present"] is False
    assert report["targets"]["items_per_s"] == {"target": 2000, "met": False, "with_model": None}
    assert report["targets_met"] is False
