"""A per-process LRU whose entries carry the job's `metrics_version` they were computed at.

The API's caches (metrics pages, validated histories, diagnoses) all work the same way: the version is
read before the rows, an entry is served only for the version it was made at, and of two entries for one
key the newer version wins. The size limit comes from settings at call time, so a changed limit takes
effect without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


class VersionedCache(Generic[V]):
    def __init__(self, size_of: Callable[[V], int], largest_share: float = 1.0):
        """`size_of` measures a value in the limit's unit; a value above `largest_share` of the limit is not
        kept, so one huge entry cannot flush everyone else's."""
        self.size_of, self.largest_share = size_of, largest_share
        self._lock = threading.Lock()  # sync routes run on a thread pool
        self._cache: LRUCache[Hashable, tuple[int, V]] | None = None

    def _store(self, limit: int) -> LRUCache[Hashable, tuple[int, V]]:
        if self._cache is None or self._cache.maxsize != limit:
            self._cache = LRUCache(maxsize=limit, getsizeof=lambda entry: self.size_of(entry[1]) + 1)
        return self._cache

    def latest(self, key: Hashable, *, limit: int) -> tuple[int, V] | None:
        """(version, value) of the key's entry, whatever its version."""
        if limit <= 0:
            return None
        with self._lock:
            return self._store(limit).get(key)

    def get(self, key: Hashable, version: int, *, limit: int) -> V | None:
        """The key's value made at exactly `version`."""
        found = self.latest(key, limit=limit)
        return found[1] if found is not None and found[0] == version else None

    def put(self, key: Hashable, version: int, value: V, *, limit: int) -> None:
        if limit <= 0 or self.size_of(value) + 1 > limit * self.largest_share:
            return
        with self._lock:
            store = self._store(limit)
            current = store.get(key)
            if current is None or current[0] <= version:
                store[key] = (version, value)

    def clear(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.clear()
