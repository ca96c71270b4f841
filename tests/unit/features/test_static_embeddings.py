"""The static model's math (pure, a tiny vocabulary): distillation pools each token between
[CLS] and [SEP], SIF weights fall with frequency, a text is the normalised mean of its tokens, the
fit finds a known weighting and map; and the shipped fit belongs to the installed network."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigurationError
from features.embeddings import load_model
from features.static_embeddings import (
    CLS_ID,
    SEP_ID,
    STATIC_MINILM,
    StaticFit,
    StaticMiniLM,
    distill_token_vectors,
    fit_static,
    load_fit,
    pool,
    save_fit,
    sif_weights,
)


def _network(ids: np.ndarray) -> np.ndarray:
    """A fake network: position p of a sequence gets the vector (id, p, 1)."""
    n, length = ids.shape
    positions = np.broadcast_to(np.arange(length), (n, length))
    return np.stack([ids.astype(np.float32), positions.astype(np.float32), np.ones((n, length), np.float32)], axis=2)


def test_distillation_mean_pools_each_token_between_cls_and_sep() -> None:
    seen: list[np.ndarray] = []
    table = distill_token_vectors(lambda ids: seen.append(ids) or _network(ids), 5, batch_size=2)
    assert [len(b) for b in seen] == [2, 2, 1]
    assert all((b[:, 0] == CLS_ID).all() and (b[:, 2] == SEP_ID).all() for b in seen)
    expected = np.array([[(CLS_ID + t + SEP_ID) / 3, 1.0, 1.0] for t in range(5)], dtype=np.float32)
    assert np.allclose(table, expected)


def test_sif_weights_fall_with_frequency_and_stay_below_one() -> None:
    weights = sif_weights(1000, 1e-3)
    assert weights.shape == (1000,) and (np.diff(weights) > 0).all()
    assert 0 < weights[0] < 0.1 and 0.5 < weights[-1] < 1


def test_a_text_is_the_normalised_mean_of_its_token_rows() -> None:
    table = np.array([[1, 0], [0, 1], [3, 4]], dtype=np.float32)
    vectors = pool(table, [[0, 1], [2], [], [0, 0, 1]])
    assert np.allclose(vectors[0], [2**-0.5, 2**-0.5]) and np.allclose(vectors[1], [0.6, 0.8])
    assert not vectors[2].any()  # no token: a zero row
    assert np.allclose(vectors[3], np.array([2, 1]) / 5**0.5)


def test_pooling_in_place_equals_gathering_the_rows() -> None:
    rng = np.random.default_rng(5)
    table = rng.standard_normal((500, 384)).astype(np.float32)
    texts = [list(rng.integers(0, 500, size=int(n))) for n in rng.integers(0, 90, size=300)]
    texts[7] = []
    gathered = np.array([table[t].mean(axis=0) if t else np.zeros(384) for t in texts], dtype=np.float64)
    norms = np.linalg.norm(gathered, axis=1, keepdims=True)
    expected = gathered / np.maximum(norms, 1e-12)
    vectors = pool(table, texts)
    assert vectors.dtype == np.float32 and vectors.shape == (300, 384)
    assert np.abs(vectors - expected).max() < 1e-6 and not vectors[7].any()


def test_a_token_outside_the_table_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"token ids 0\.\.3 outside the static table's 3 rows"):
        pool(np.eye(3, dtype=np.float32), [[0, 3]])


def test_the_static_model_is_a_built_in_that_loads_lazily(tmp_path) -> None:
    model = load_model(STATIC_MINILM, cache_dir=tmp_path)
    assert model.name == STATIC_MINILM and model.dim == 384
    assert list(tmp_path.iterdir()) == []  # nothing distilled before the first embed


def test_a_bad_thread_count_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="threads -1"):
        StaticMiniLM(threads=-1)


def _fitting_problem(seed: int = 5) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """A 60-token vocabulary of random rows and 400 texts whose targets are what a known weighting
    and map of those rows give: the fit has something to find."""
    rng = np.random.default_rng(seed)
    distilled = rng.normal(size=(60, 8)).astype(np.float32)
    true_weights = rng.uniform(0.1, 2.0, size=60)
    true_map = np.eye(8) + rng.normal(scale=0.5, size=(8, 8))
    texts = [list(rng.integers(0, 60, size=rng.integers(3, 12))) for _ in range(400)]
    targets = np.array([(distilled[t] * true_weights[t, None]).mean(axis=0) @ true_map for t in texts])
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    return distilled, texts, targets.astype(np.float32)


def test_the_fit_turns_the_static_vectors_towards_the_targets_on_held_out_texts() -> None:
    distilled, texts, targets = _fitting_problem()
    seen: list[tuple[int, float]] = []
    fit = fit_static(
        distilled,
        texts,
        targets,
        epochs=30,
        batch_texts=32,
        learning_rate=0.05,
        source="abc",
        progress=lambda e, c: seen.append((e, c)),
    )
    assert fit.source == "abc" and fit.weights.shape == (60,) and fit.projection.shape == (8, 8)
    assert (fit.weights >= 0).all()
    report = fit.report
    assert report["texts"] == 360 and report["holdout_texts"] == 40 and [e for e, _ in seen] == list(range(1, 31))
    assert report["holdout_cosine_before"] < 0.5 and report["holdout_cosine_after"] > 0.99  # 0.385 -> 0.997
    held_out = pool(fit.table(distilled), texts[360:])
    assert np.isclose((held_out * targets[360:]).sum(axis=1).mean(), report["holdout_cosine_after"], atol=1e-3)


def test_the_fit_is_the_same_for_the_same_seed() -> None:
    distilled, texts, targets = _fitting_problem()
    first, second = (fit_static(distilled, texts, targets, epochs=2, seed=3) for _ in range(2))
    assert np.array_equal(first.weights, second.weights) and np.array_equal(first.projection, second.projection)


def test_a_fitted_table_maps_each_row_so_pooling_then_mapping_is_the_same() -> None:
    distilled, texts, _ = _fitting_problem()
    fit = StaticFit(
        np.linspace(0.5, 1.5, 60, dtype=np.float32),
        np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32),
        "s",
    )
    direct = pool(fit.table(distilled), texts[:5])
    by_hand = np.array([(distilled[t] * fit.weights[t, None]).mean(axis=0) @ fit.projection for t in texts[:5]])
    assert np.allclose(direct, by_hand / np.linalg.norm(by_hand, axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ConfigurationError, match="60 x 8 table, the distilled one is 59 x 8"):
        fit.table(distilled[:59])


def test_a_fit_survives_the_file_and_a_broken_file_is_a_configuration_error(tmp_path) -> None:
    fit = StaticFit(np.arange(4, dtype=np.float32), np.eye(3, dtype=np.float32), "cafe", {"texts": 7, "corpus": "x"})
    save_fit(fit, tmp_path / "fit.npz")
    again = load_fit(tmp_path / "fit.npz")
    assert np.array_equal(again.weights, fit.weights) and np.array_equal(again.projection, fit.projection)
    assert again.source == "cafe" and again.report == {"texts": "7", "corpus": "x"}
    (tmp_path / "bad.npz").write_bytes(b"not a fit")
    with pytest.raises(ConfigurationError, match=r"bad\.npz cannot be read.*bench\.static_fit"):
        load_fit(tmp_path / "bad.npz")


def test_the_shipped_fit_is_for_the_installed_network_and_another_is_refused(tmp_path) -> None:
    shipped = load_fit()
    assert shipped.weights.shape == (30522,) and shipped.projection.shape == (384, 384)
    assert float(shipped.report["holdout_cosine_after"]) > 0.8
    model = StaticMiniLM(threads=0)
    assert model.embed(["Apple raises its dividend"]).shape == (1, 384)  # the shipped fit matches the install
    other = StaticMiniLM(threads=0, fit=StaticFit(shipped.weights, shipped.projection, "0123456789abcdef"))
    with pytest.raises(ConfigurationError, match=r"another MiniLM build.*0123456789abcdef.*bench\.static_fit"):
        other.embed(["Apple raises its dividend"])
