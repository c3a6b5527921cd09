"""Validated epoch histories kept per API process, brought up to date with only the rows added since.

A running job gains one row per epoch. Re-reading and re-validating all of a 10,000-epoch history for
each new row costs about 300 ms; reading the new rows costs a few. Every epoch row written bumps the
job's `metrics_version` by at least one, in the same transaction. So if the rows after the cached last
epoch number exactly the bumps since the cached version, they are all that changed. Anything else (a
re-run epoch replacing an older row, a retried write, rows committed while reading) reloads the whole
history.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from cachetools import LRUCache

from analysis import EpochRecord

Loader = Callable[[int | None], list[EpochRecord]]  # rows after an epoch (all when None), ascending

_lock = threading.Lock()
_cache: LRUCache[uuid.UUID, tuple[int, list[EpochRecord]]] | None = None


def _store(max_epochs: int) -> LRUCache[uuid.UUID, tuple[int, list[EpochRecord]]]:
    global _cache
    if _cache is None or _cache.maxsize != max_epochs:
        _cache = LRUCache(maxsize=max_epochs, getsizeof=lambda entry: len(entry[1]) + 1)
    return _cache


def history(job_id: uuid.UUID, version: int, load: Loader, *, max_epochs: int) -> list[EpochRecord]:
    """The job's records at `version` (read before calling: rows may be newer, never older). The returned
    list is shared: callers must not change it."""
    if max_epochs <= 0:
        return load(None)
    with _lock:
        cached = _store(max_epochs).get(job_id)
    if cached is not None and cached[0] == version:
        return cached[1]
    records = None
    if cached is not None and cached[0] < version and cached[1]:
        added = load(cached[1][-1].epoch)
        if len(added) == version - cached[0]:
            records = cached[1] + added  # a new list: earlier callers keep theirs
    if records is None:
        records = load(None)
    if len(records) < max_epochs:
        with _lock:
            store = _store(max_epochs)
            current = store.get(job_id)
            if current is None or current[0] <= version:
                store[job_id] = (version, records)
    return records


def clear() -> None:
    with _lock:
        if _cache is not None:
            _cache.clear()
