"""News search in one call: embed text with the embedding model, ask the story store.

- :func:`store_story_embeddings` embeds stories (headline and summary) and upserts one vector per
  story (the news flow calls it after dedup; an updated story's vector replaces the old one);
- :func:`search_news`: the stories nearest to a text, first seen in a time range, about some symbols;
  a ticker the text names (``AAPL``, ``$F``, ``BRK.B``) that stored stories are about lifts them
  (:data:`TICKER_BOOST` on the similarity, for the order only): a sentence embedding sees a
  ticker as a few word pieces among many, so a story about another company in the same words came
  first (the sandbox's headlines searched by headline: the first hit was about the named ticker
  0.69 of the time with MiniLM, 0.98 with the lift);
- :func:`stories_like`: "more like this story", from the story's stored vector.

The model is the process's default (:func:`features.embeddings.default_model`, the built-in
all-MiniLM-L6-v2 unless :func:`features.embeddings.use_model` swapped it) or the one passed in;
only vectors stored by that same model are searched.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

from core.errors import RequestError
from features.embeddings import EmbeddingModel, default_model, embed, story_text
from storage.story_vectors import (
    StoryHit,
    StoryVector,
    estimated_stories,
    more_like_story,
    search_vectors,
    stored_tickers,
    upsert_story_vectors,
)

TICKER_BOOST = 0.1  # added to the similarity of a story about a ticker the text names, to order hits
EXACT_TICKER_STORIES = 20_000  # up to this many stories about the named tickers, compare them all
_TICKER = re.compile(r"^(\$)?([A-Z0-9]{1,10}(?:\.[A-Z0-9]{1,4})?)$")  # the symbols' grammar (quality.news_text)


@dataclass(frozen=True)
class StoryText:
    """What a story is embedded from: its id, earliest publication, tickers, headline and summary."""

    story_id: int
    first_seen: datetime
    headline: str
    summary: str | None = None
    symbols: tuple[str, ...] = ()


def text_digest(headline: str, summary: str | None = None) -> UUID:
    """The MD5 of the text a story is embedded by (:func:`features.embeddings.story_text`), kept
    beside its vector: the vector is stale when the story's text no longer has this digest."""
    return _digest(story_text(headline, summary))


def _digest(text: str) -> UUID:
    return UUID(bytes=hashlib.md5(text.encode(), usedforsecurity=False).digest())


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
    rows = [
        StoryVector(s.story_id, s.first_seen, vectors[i], tuple(s.symbols), _digest(texts[i]))
        for i, s in enumerate(stories)
    ]
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
    of ``symbols``; nearest first, a story about a ticker the text names counted
    :data:`TICKER_BOOST` nearer (see :func:`search_by_vector`)."""
    if not text or not text.strip():
        raise RequestError("the search text is empty; give a few words, e.g. 'Apple beats earnings'")
    chosen = model or default_model()
    vector = embed([text.strip()], chosen)[0]
    return search_by_vector(conn, vector, text, model=chosen.name, k=k, since=since, until=until, symbols=symbols)


def ticker_candidates(text: str) -> tuple[str, ...]:
    """The words of ``text`` that may be tickers: capitals and digits with at least one letter, as
    symbols are written (a class suffix such as ``.B`` allowed), two characters or more unless after
    a ``$`` (a lone capital is as often a word: "A", "I"). Punctuation around a word is left out;
    each once, in order. Only those some stored story is about are used (:func:`search_by_vector`)."""
    found: dict[str, None] = {}
    for word in text.split():
        match = _TICKER.match(word.strip(",.;:!?()[]\"'"))
        if match and any(c.isalpha() for c in match[2]) and (match[1] or len(match[2]) >= 2):
            found.setdefault(match[2])
    return tuple(found)


def rank_with_tickers(
    hits: Sequence[StoryHit], about: Sequence[StoryHit], named: Iterable[str], k: int
) -> list[StoryHit]:
    """``hits`` and ``about`` (the same search limited to the named tickers) as one list: each
    story once, ordered by similarity plus :data:`TICKER_BOOST` when it is about a named ticker
    (ties by story id), the first ``k``."""
    wanted = set(named)
    stories = {h.story_id: h for h in [*hits, *about]}

    def score(hit: StoryHit) -> tuple[float, int]:
        return (-(hit.similarity + (TICKER_BOOST if wanted & set(hit.symbols) else 0.0)), hit.story_id)

    return sorted(stories.values(), key=score)[:k]


def search_by_vector(
    conn: psycopg.Connection,
    vector: Sequence[float],
    text: str,
    *,
    model: str,
    k: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
    symbols: Iterable[str] | None = None,
) -> list[StoryHit]:
    """:func:`search_news` for a query already embedded (``vector``, ``model``'s, of ``text``):
    the nearest ``k``; when no ``symbols`` filter is given and ``text`` names tickers the store
    knows, also the nearest ``k`` about them, ranked together by :func:`rank_with_tickers`. Those
    are found by comparing every story about the tickers while the planner estimates them at most
    :data:`EXACT_TICKER_STORIES` (an HNSW scan filtered to a rare ticker walks far), else through
    the HNSW graphs."""
    hits = search_vectors(conn, vector, model=model, k=k, since=since, until=until, symbols=symbols)
    named = () if symbols is not None else stored_tickers(conn, ticker_candidates(text), model)
    if not named:
        return hits
    exact = estimated_stories(conn, named, model) <= EXACT_TICKER_STORIES
    about = search_vectors(conn, vector, model=model, k=k, since=since, until=until, symbols=named, exact=exact)
    return rank_with_tickers(hits, about, named, k)


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
