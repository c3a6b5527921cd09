"""Validated epoch histories kept per API process, brought up to date with only the rows added since.

A running job gains one row per epoch. Re-reading and re-validating all of a 10,000-epoch history for
each new row costs about 300 ms; reading the new rows costs a few. Every epoch row written bumps the
job's `metrics_version` by at least one, in the same transaction. So if the rows after the cached last
epoch number exactly the bumps since the cached version, they are all that changed. Anything else (a
re-run epoch replacing an older row, a retried write, rows committed while reading) reloads the whole
history.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from analysis import EpochRecord
from models.versioned_cache import VersionedCache

Loader = Callable[[int | None], list[EpochRecord]]  # rows after an epoch (all when None), ascending

_histories: VersionedCache[list[EpochRecord]] = VersionedCache(len)


def history(job_id: uuid.UUID, version: int, load: Loader, *, max_epochs: int) -> list[EpochRecord]:
    """The job's records at `version` (read before calling: rows may be newer, never older). The returned
    list is shared: callers must not change it."""
    cached = _histories.latest(job_id, limit=max_epochs)
    if cached is not None and cached[0] == version:
        return cached[1]
    records = None
    if cached is not None and cached[0] < version and cached[1]:
        added = load(cached[1][-1].epoch)
        if len(added) == version - cached[0]:
            records = cached[1] + added  # a new list: earlier callers keep theirs
    if records is None:
        records = load(None)
    _histories.put(job_id, version, records, limit=max_epochs)
    return records


def clear() -> None:
    _histories.clear()
