"""The static model's math (pure, a tiny vocabulary): distillation pools each token between
[CLS] and [SEP], SIF weights fall with frequency, a text is the normalised mean of its tokens."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigurationError
from features.embeddings import load_model
from features.static_embeddings import CLS_ID, SEP_ID, STATIC_MINILM, distill_token_vectors, pool, sif_weights


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


def test_the_static_model_is_a_built_in_that_loads_lazily(tmp_path) -> None:
    model = load_model(STATIC_MINILM, cache_dir=tmp_path)
    assert model.name == STATIC_MINILM and model.dim == 384
    assert list(tmp_path.iterdir()) == []  # nothing distilled before the first embed


def test_a_bad_thread_count_is_refused() -> None:
    from features.static_embeddings import StaticMiniLM

    with pytest.raises(ConfigurationError, match="threads -1"):
        StaticMiniLM(threads=-1)
