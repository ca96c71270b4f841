"""News search in one call: embed text with the embedding model, ask the story store.

- :func:`store_story_embeddings` embeds stories (headline and summary) and upserts one vector per
  story (the news flow calls it after dedup; an updated story's vector replaces the old one);
- :func:`search_news`: the stories nearest to a text, first seen in a time range, about some symbols;
- :func:`stories_like`: "more like this story", from the story's stored vector.

The model is the process's default (:func:`features.embeddings.default_model`, the built-in
all-MiniLM-L6-v2 unless :func:`features.embeddings.use_model` swapped it) or the one passed in;
only vectors stored by that same model are searched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from core.errors import RequestError
from features.embeddings import EmbeddingModel, default_model, embed, story_text
from storage.story_vectors import StoryHit, StoryVector, more_like_story, search_vectors, upsert_story_vectors


@dataclass(frozen=True)
class StoryText:
    """What a story is embedded from: its id, earliest publication, tickers, headline and summary."""

    story_id: int
    first_seen: datetime
    headline: str
    summary: str | None = None
    symbols: tuple[str, ...] = ()


def store_story_embeddings(
    conn: psycopg.Connection, stories: Sequence[StoryText], model: EmbeddingModel | None = None
) -> int:
    """Embed ``stories`` and store one vector each (replacing a story's earlier one); returns the
    stories stored. One transaction: a failure stores none of them."""
    chosen = model or default_model()
    texts = [story_text(s.headline, s.summary) for s in stories]
    for s, text in zip(stories, texts, strict=True):
        if not text:
            raise RequestError(f"story {s.story_id} has neither headline nor summary: nothing to embed")
    vectors = embed(texts, chosen)
    rows = [StoryVector(s.story_id, s.first_seen, vectors[i], tuple(s.symbols)) for i, s in enumerate(stories)]
    return upsert_story_vectors(conn, rows, chosen.name)


def search_news(
    conn: psycopg.Connection,
    text: str,
    *,
    k: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Iterable[str] | None = None,
    model: EmbeddingModel | None = None,
) -> list[StoryHit]:
    """The ``k`` stories nearest in meaning to ``text``, first seen in ``[since, until)``, about any
    of ``symbols``; nearest first."""
    if not text or not text.strip():
        raise RequestError("the search text is empty; give a few words, e.g. 'Apple beats earnings'")
    chosen = model or default_model()
    vector = embed([text.strip()], chosen)[0]
    return search_vectors(conn, vector, model=chosen.name, k=k, since=since, until=until, symbols=symbols)


def stories_like(
    conn: psycopg.Connection,
    story_id: int,
    *,
    k: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Iterable[str] | None = None,
    model: EmbeddingModel | None = None,
) -> list[StoryHit]:
    """The ``k`` stories nearest to story ``story_id`` (itself left out); nearest first."""
    chosen = model or default_model()
    return more_like_story(conn, story_id, model=chosen.name, k=k, since=since, until=until, symbols=symbols)
