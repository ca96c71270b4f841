"""What a flow run works with, built once from its settings: the settings, a connection factory
for the hot store and the lake.

Every task of the run takes this one object (passed ``quote``d: Prefect does not walk it) instead
of rebuilding a lake client and reconnecting from the settings in each flow and helper. A
connection is still opened per unit of work: psycopg connections are not shared between the
threads and tasks that run at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import psycopg

from core.settings import Settings
from db.connect import async_database_connection, database_connection
from features.embeddings import EmbeddingModel, process_model
from features.sentiment import SentimentModel, load_sentiment_model
from quality.dedup import DedupConfig
from sources.factory import source_registry
from sources.registry import SourceRegistry
from storage.lake import Lake
from storage.router import StorageRouter


@dataclass
class RunResources:
    """The settings of a run, its lake, and connections to its hot store on demand."""

    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> RunResources:
        return cls(settings)

    @cached_property
    def lake(self) -> Lake:
        """The run's lake client, built when first used (a run that never reads or writes the
        lake does not need its credentials)."""
        return Lake.from_settings(self.settings.lake)

    @cached_property
    def sources(self) -> SourceRegistry:
        """The sources the run's settings know (built-ins, entry points, ``sources:``), found once
        per run: the parsers of the pages it reads back come from here."""
        return source_registry(self.settings)

    @cached_property
    def sentiment(self) -> SentimentModel:
        """The run's news sentiment model, loaded once per run (the lexicon takes ~0.2 s)."""
        return load_sentiment_model(self.settings.news.sentiment_model)

    @cached_property
    def embedder(self) -> EmbeddingModel | None:
        """The model the news flow embeds stories with (``embeddings.model``), or None when
        ``embeddings.enabled`` is false; shared by the runs of a process, loaded on first use."""
        embeddings = self.settings.embeddings
        if not embeddings.enabled:
            return None
        return process_model(embeddings.model, batch_size=embeddings.batch_size, cache_dir=embeddings.cache_dir)

    @cached_property
    def dedup(self) -> DedupConfig:
        """How news items are grouped into stories (quality.dedup)."""
        news = self.settings.news
        return DedupConfig(threshold=news.dedup_threshold, window_hours=news.dedup_window_hours)

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        """A new synchronous connection (use as a context manager; ``autocommit=True`` and the like
        pass through)."""
        return database_connection(self.settings, **kwargs)

    async def aconnect(self, **kwargs: Any) -> psycopg.AsyncConnection:
        """A new asyncio connection (use as an async context manager)."""
        return await async_database_connection(self.settings, **kwargs)

    @contextmanager
    def router(self) -> Iterator[StorageRouter]:
        """Reads across the hot store and the lake, on an autocommit connection of its own."""
        with self.connect(autocommit=True) as conn:
            yield StorageRouter(conn, self.lake, self.settings)
