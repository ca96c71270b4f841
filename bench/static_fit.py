"""Fit the static embedding model to MiniLM (:func:`features.static_embeddings.fit_static`) and
write the fit the package ships (``features/data/minilm-l6-v2-static-fit.npz``).

``python -m bench.static_fit [--out PATH] [--epochs N] [--json]``

The texts are real English prose: the Wikipedia excerpt gensim ships in its test data (an
articles dump of ~6 MB; gensim is a test dependency and is not imported), its markup stripped,
cut into passages of at most 80 words, and each passage's first sentence as a short text of its
own (headline-sized texts matter: the news flow embeds a headline and its lead), and
:data:`TICKER_TEXTS` of those short texts again with a made-up ticker (1-5 capital letters) before,
after or as a label, since news names companies by ticker and Wikipedia seldom does. MiniLM's
vectors of them are the targets. The news with human similarity ratings the bench measures on (Lee et al.
2005) is not used: the fit never sees it, nor its background corpus. Reports the fit's held-out
cosine to MiniLM and the Lee correlations of MiniLM, the distilled table with SIF weights alone,
and the fitted model. ~3 minutes on 2 cores (MiniLM's targets ~80 s, the fit ~1-2 min).
"""

from __future__ import annotations

import argparse
import bz2
import html
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from features.embeddings import MiniLMOnnx, package_file
from features.static_embeddings import FIT_FILE, StaticFit, StaticMiniLM, fit_static, save_fit, sif_weights

WIKI = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
PASSAGE_WORDS = 80
MIN_WORDS = 20
TICKER_TEXTS = 3000


def clean_paragraph(line: str) -> str | None:
    """A Wikipedia paragraph as plain prose, or None for a template, table, list or heading line."""
    text = line.strip()
    if len(text) < 200 or text[0] in "{|!*#=:<[" or "|" in text[:40]:
        return None
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref.*?</ref>", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    for _ in range(3):  # nested templates
        text = re.sub(r"\{\{[^{}]*\}\}", "", text)
    text = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\s+", " ", text.replace("'''", "").replace("''", "")).strip()
    return text if len(text) >= 150 and "{" not in text and "}" not in text else None


def passages(paragraphs: list[str]) -> list[str]:
    """Passages of at most :data:`PASSAGE_WORDS` words (at least :data:`MIN_WORDS`), then the first
    sentence of each passage (5-30 words) as a short text."""
    out = []
    for paragraph in paragraphs:
        words = paragraph.split()
        for i in range(0, len(words), PASSAGE_WORDS):
            if len(words[i : i + PASSAGE_WORDS]) >= MIN_WORDS:
                out.append(" ".join(words[i : i + PASSAGE_WORDS]))
    short = [s for s in (re.split(r"(?<=[.!?]) ", p)[0] for p in out) if 5 <= len(s.split()) <= 30]
    return out + short


def with_tickers(texts: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` of the short ``texts`` (30 words at most) with a made-up ticker: "T text", "text (T)"
    or "T: text"."""
    letters = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    out = []
    for text in [t for t in texts if len(t.split()) <= 30][:count]:
        ticker = "".join(rng.choice(letters, int(rng.choice([1, 2, 3, 4, 4, 4, 5]))))
        form = int(rng.integers(0, 3))
        out.append(f"{ticker} {text}" if form == 0 else f"{text} ({ticker})" if form == 1 else f"{ticker}: {text}")
    return out


def corpus() -> list[str]:
    raw = bz2.decompress(package_file("gensim", WIKI, "the static model's fitting corpus").read_bytes())
    paragraphs = [p for p in (clean_paragraph(line) for line in html.unescape(raw.decode()).split("\n")) if p]
    texts = passages(paragraphs)
    rng = np.random.default_rng(0)
    rng.shuffle(texts)
    texts += with_tickers(texts, TICKER_TEXTS, rng)
    rng.shuffle(texts)  # the held-out share is then a random one
    return texts


def run(out: Path = FIT_FILE, epochs: int = 6) -> dict[str, Any]:
    from bench.news import lee_similarity_set

    t0 = time.perf_counter()
    texts = corpus()
    minilm = MiniLMOnnx(threads=0, cache_texts=0)
    targets = minilm.embed(texts)
    t1 = time.perf_counter()
    static = StaticMiniLM(threads=0)
    distilled, source = static.distilled()
    tokens = static.tokenize(texts)

    def shown(epoch: int, cosine: float) -> None:
        print(f"epoch {epoch}/{epochs}: held-out cosine to MiniLM {cosine:.4f}", file=sys.stderr, flush=True)

    fit = fit_static(distilled, tokens, targets, epochs=epochs, source=source, progress=shown)
    t2 = time.perf_counter()
    docs, ratings = lee_similarity_set()
    identity = StaticFit(sif_weights(len(distilled)), np.eye(distilled.shape[1], dtype=np.float32), source)
    lee = {
        "minilm": _lee(minilm.embed(docs), ratings),
        "distilled_sif_only": _lee(_pooled(identity, distilled, static.tokenize(docs)), ratings),
        "fitted": _lee(_pooled(fit, distilled, static.tokenize(docs)), ratings),
    }
    report = {
        **fit.report,
        "corpus": "gensim test data: Wikipedia articles excerpt",
        "corpus_texts": len(texts),
        "lee_pearson_fitted": lee["fitted"]["pearson"],
        "lee_pearson_minilm": lee["minilm"]["pearson"],
    }
    save_fit(StaticFit(fit.weights, fit.projection, source, report), out)
    return {
        **report,
        "lee": lee,
        "seconds": {"targets": round(t1 - t0, 1), "fit": round(t2 - t1, 1)},
        "out": str(out),
    }


def _pooled(fit: StaticFit, distilled: np.ndarray, tokens: list[list[int]]) -> np.ndarray:
    from features.static_embeddings import pool

    return pool(fit.table(distilled), tokens)


def _lee(vectors: np.ndarray, ratings: np.ndarray) -> dict[str, Any]:
    from bench.news import human_correlation

    return human_correlation(vectors, ratings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIT_FILE)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.out, args.epochs)
    print(json.dumps(report, default=str) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
