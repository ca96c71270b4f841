"""The news flow's embedding model comes from the ``embeddings`` settings: on by default, one
instance per process, and none at all when ``embeddings.enabled`` is false."""

from __future__ import annotations

import pytest

from core.settings import load_settings, parse_overrides
from features.embeddings import DEFAULT_MODEL, process_model
from tasks.resources import RunResources
from tests.support.embeddings import HashedWords

pytestmark = pytest.mark.usefixtures("isolated")


def test_embedding_is_on_by_default_with_the_built_in_model_shared_by_runs() -> None:
    first = RunResources(load_settings()).embedder
    second = RunResources(load_settings()).embedder
    assert first is not None and first.name == DEFAULT_MODEL == "minilm-l6-v2-static-fit"
    assert first is second  # a worker running many flows loads the model (its table) once


def test_disabled_embedding_gives_no_model() -> None:
    settings = load_settings(overrides=parse_overrides(["embeddings.enabled=false"]))
    assert settings.embeddings.enabled is False
    assert RunResources(settings).embedder is None


def test_a_swapped_model_is_the_one_the_flow_uses() -> None:
    settings = load_settings(overrides=parse_overrides(["embeddings.model=tests.support.embeddings:make_hashed_words"]))
    model = RunResources(settings).embedder
    assert isinstance(model, HashedWords)
    assert process_model("tests.support.embeddings:make_hashed_words") is model
