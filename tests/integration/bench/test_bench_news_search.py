"""The news search benchmark runs end to end at a tiny size in `make test`: every figure present and
a finite positive number, recall measured against an exact scan, the scratch database dropped (the
1M-story figures come from ``python -m bench.news_search``; no timing is asserted)."""

from __future__ import annotations

import math

from bench.news_search import DATABASE, run
from core.settings import Settings
from features.embeddings import DEFAULT_MODEL
from stack.scratch import database_exists


def test_tiny_news_search_benchmark(stack: Settings) -> None:
    report = run(stack, stories=3000, queries=12, texts=8, rebuild=True)
    again = run(stack, stories=3000, queries=4, texts=8, drop=True)  # the same size: the database is reused

    assert again["build"] == {
        "reused": True,
        "chunks": report["build"]["chunks"],
        "hnsw_size": report["build"]["hnsw_size"],
    }

    embedding = report["embedding"]
    assert embedding["model"] == DEFAULT_MODEL and embedding["texts"] == 8
    assert embedding["items_per_s"] > 0 and embedding["load_s"] > 0
    build = report["build"]
    assert build["load_s"] >= 0 and build["index_build_s"] >= 0 and build["table_size"]
    assert build["index"].startswith("CREATE INDEX story_embeddings_hnsw_idx") and "halfvec" in build["index"]
    assert 8 <= build["chunks"] <= 10 and build["hnsw_size"].endswith(("kB", "MB"))  # 90-day chunks over two years
    search = report["search"]
    assert search["queries"] == 12 and search["k"] == 10 and search["shared_buffers"].endswith(("MB", "GB"))
    assert 0 < search["p50_ms"] <= search["p95_ms"] <= search["p99_ms"]
    kinds = ("all_time", "30d", "ticker_90d", "like_story", "named_ticker")
    assert set(search["by_kind"]) == set(kinds)
    for kind in search["by_kind"].values():
        assert math.isfinite(kind["p95_ms"]) and kind["p95_ms"] > 0
        assert 0.0 < kind["recall_at_10"] <= 1.0  # measured against the exact scan
    assert set(report["targets"]) == {f"search_p95_ms_{kind}" for kind in kinds}
    for kind in kinds:
        target = report["targets"][f"search_p95_ms_{kind}"]
        assert target["target"] == 50.0 and target["met"] == (search["by_kind"][kind]["p95_ms"] < 50.0)
    assert report["targets_met"] == all(t["met"] for t in report["targets"].values())
    assert not database_exists(stack, DATABASE)
