"""What a flow run works with, built once from its settings: the settings, connections to the
hot store and the lake.

Every task of the run takes this one object (passed ``quote``d: Prefect does not walk it) instead
of rebuilding a lake client and reconnecting from the settings in each flow and helper. Each unit
of work takes a connection of its own (psycopg connections are not shared between the threads and
tasks that run at once) from the run's pool (db.pool): a connection opened for one symbol serves
the next, instead of a backend started and authenticated per symbol and stage. The run closes its
resources when it ends (``with RunResources.from_settings(...) as resources``, or :meth:`close`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psycopg

from core.settings import Settings
from db.connect import async_database_connection
from db.pool import AsyncConnectionPool, ConnectionPool
from features.embeddings import EmbeddingModel, process_model
from features.sentiment import SentimentModel, load_sentiment_model
from quality.dedup import DedupConfig
from sources.factory import source_registry
from sources.registry import SourceRegistry
from storage.lake import Lake
from storage.router import StorageRouter

_CREATING_POOL = threading.Lock()


@dataclass
class RunResources:
    """The settings of a run, its lake, and connections to its hot store on demand."""

    settings: Settings
    _pool: ConnectionPool | None = field(default=None, init=False, repr=False)
    _async_pool: AsyncConnectionPool | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RunResources:
        return cls(settings)

    def __enter__(self) -> RunResources:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a Dask worker, a subprocess): the settings and what is cheap to rebuild, no
        connection."""
        return {**self.__dict__, "_pool": None, "_async_pool": None}

    def close(self) -> None:
        """Close the run's idle connections (the resources stay usable: a later call opens new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @property
    def keep_connections(self) -> int:
        """Idle connections the run keeps: one per symbol in flight, and two for the flow's own steps."""
        return self.settings.collection.max_parallel_symbols + 2

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

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A synchronous connection of the run's pool for the block (committed at its end; rolled
        back and closed on an exception)."""
        pool = self._pool
        if pool is None:
            with _CREATING_POOL:  # threads of the run asking at once share one pool
                if self._pool is None:
                    self._pool = ConnectionPool(self.settings, keep=self.keep_connections)
                pool = self._pool
        with pool.connection(autocommit=autocommit) as conn:
            yield conn

    @asynccontextmanager
    async def pooled_async_connections(self) -> AsyncIterator[None]:
        """Within the block, :meth:`aconnect` reuses connections (an asyncio connection belongs to
        its event loop: the pool lives as long as the block, in the loop that runs it)."""
        pool = self._async_pool = AsyncConnectionPool(self.settings, keep=self.keep_connections)
        try:
            yield
        finally:
            self._async_pool = None
            await pool.close()

    @asynccontextmanager
    async def aconnect(self, autocommit: bool = False) -> AsyncIterator[psycopg.AsyncConnection]:
        """An asyncio connection for the block: from the pool inside :meth:`pooled_async_connections`,
        else a new one, closed at the end."""
        if self._async_pool is not None:
            async with self._async_pool.connection(autocommit=autocommit) as conn:
                yield conn
            return
        async with await async_database_connection(self.settings, autocommit=autocommit) as conn:
            yield conn

    @contextmanager
    def router(self) -> Iterator[StorageRouter]:
        """Reads across the hot store and the lake, on an autocommit connection of its own."""
        with self.connect(autocommit=True) as conn:
            yield StorageRouter(conn, self.lake, self.settings)
