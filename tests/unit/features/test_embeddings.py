"""features.embeddings: the built-in all-MiniLM-L6-v2 (int8 ONNX, shipped by a registry package, run
offline on CPU) and the interface a user swaps it through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigurationError, RequestError
from features.embeddings import (
    DEFAULT_MODEL,
    MINILM,
    MINILM_DIM,
    EmbeddingModel,
    MiniLMOnnx,
    embed,
    load_model,
    mean_pool,
    normalize_rows,
    story_text,
)
from features.static_embeddings import STATIC_MINILM
from tests.support.embeddings import HashedWords

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def minilm() -> MiniLMOnnx:
    return MiniLMOnnx(batch_size=4, cache_texts=0)  # every text through the network


def test_mean_pool_leaves_out_padding() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 3.0]]


def test_normalize_rows_gives_unit_rows_and_keeps_a_zero_row() -> None:
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    assert out.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [0.0, 0.0]]


def test_story_text_joins_headline_and_summary() -> None:
    assert story_text("Apple beats", "Revenue up") == "Apple beats. Revenue up"
    assert story_text("Apple beats", None) == "Apple beats"
    assert story_text("", " Revenue up ") == "Revenue up"


def test_nothing_loads_until_the_first_embed() -> None:
    # a fresh interpreter: importing the module and building the default model loads no runtime
    probe = (
        "import sys; import features.embeddings as e; m = e.load_model(); "
        "print(m.name, m.dim, 'onnxruntime' in sys.modules, 'tokenizers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == [DEFAULT_MODEL, str(MINILM_DIM), "False", "False"]
    assert DEFAULT_MODEL == STATIC_MINILM != MINILM  # the news path keeps up with a backfill (issue 16)
    assert isinstance(MiniLMOnnx(), EmbeddingModel)
    assert load_model(MINILM).name == MINILM


def test_the_builtin_model_gives_unit_float32_rows(minilm: MiniLMOnnx) -> None:
    vectors = embed(["Apple beats earnings estimates", "Oil falls as OPEC raises output"], minilm)
    assert vectors.shape == (2, MINILM_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embed([], minilm).shape == (0, MINILM_DIM)


def test_a_paraphrase_is_nearer_than_an_unrelated_story(minilm: MiniLMOnnx) -> None:
    query, paraphrase, unrelated, other = embed(
        [
            "Apple beats quarterly earnings estimates on strong iPhone sales",
            "iPhone maker Apple tops Wall Street profit forecasts as phone demand surges",
            "Oil prices slide after OPEC agrees to raise output",
            "Tesla recalls vehicles over faulty seat belts",
        ],
        minilm,
    )
    assert query @ paraphrase > 0.6
    assert query @ paraphrase > query @ unrelated + 0.3
    assert query @ paraphrase > query @ other + 0.3


def test_a_text_gets_the_same_vector_alone_or_in_any_batch(minilm: MiniLMOnnx) -> None:
    texts = [f"Company {i} raises its dividend by {i} percent after a record year" for i in range(9)]
    texts.insert(3, "Short one")
    together = embed(texts, minilm)  # several batches of 4, sorted by length and put back in order
    alone = np.vstack([embed([t], minilm) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_recent_texts_are_answered_from_a_bounded_cache_with_the_networks_vectors(minilm: MiniLMOnnx) -> None:
    cached = MiniLMOnnx(batch_size=4, cache_texts=3)
    texts = ["Apple beats estimates", "Oil falls on supply worries", "Bank raises its dividend"]
    first = cached.embed(texts)
    assert cached.cache_hits == 0 and np.allclose(first, minilm.embed(texts), atol=1e-4)
    again = cached.embed([texts[2], "A new text", texts[2]])
    assert cached.cache_hits == 2 and np.array_equal(again[0], first[2]) and np.array_equal(again[2], first[2])
    assert np.allclose(again[1], minilm.embed(["A new text"])[0], atol=1e-4)
    cached.embed([texts[0]])  # evicted by "A new text" (the least recently used): the network again
    assert cached.cache_hits == 2


def test_texts_longer_than_the_model_window_are_truncated_not_refused(minilm: MiniLMOnnx) -> None:
    long_text = "shares rallied " * 600  # 1200 words, far past 256 tokens
    assert embed([long_text], minilm).shape == (1, MINILM_DIM)


def test_bad_input_is_a_request_error(minilm: MiniLMOnnx) -> None:
    with pytest.raises(RequestError, match="not one string"):
        embed("a bare string", minilm)
    with pytest.raises(RequestError, match="text 1 is int"):
        embed(["fine", 3], minilm)  # type: ignore[list-item]


def test_a_model_is_swapped_by_import_path() -> None:
    model = load_model("tests.support.embeddings:make_hashed_words")
    assert isinstance(model, HashedWords)
    vectors = embed(["apple beats", "apple beats"], model)
    assert vectors.shape == (2, 384) and float(vectors[0] @ vectors[1]) == pytest.approx(1.0)


def test_a_bad_model_spec_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="'no-such-model' is neither a built-in"):
        load_model("no-such-model")
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        load_model("tests.support.embeddings:Missing")
    with pytest.raises(ConfigurationError, match="lacks name, dim or embed"):
        load_model("tests.support.embeddings:NoEmbed")


def test_a_model_returning_the_wrong_shape_is_caught() -> None:
    class Short(HashedWords):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            return super().embed(texts)[:, :10]

    with pytest.raises(ConfigurationError, match=r"returned shape \(1, 10\)"):
        embed(["x"], Short())
