"""A thread-safe LRU bounded by the bytes of what it holds.

Generated minute bars and ticks are cached per (symbol, session) so paging through a range or
serving the same session to two vendors costs one generation; the byte bound keeps a long-running
sandbox from growing without limit. Route handlers run in a thread pool, hence the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteBoundedLRU(Generic[V]):
    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found[0]
            self.misses += 1
        value = create()  # outside the lock: generation is the slow part; a duplicate is harmless
        size = self._size_of(value)
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, size)
                self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, old) = self._items.popitem(last=False)
                self._bytes -= old
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
