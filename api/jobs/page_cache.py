"""Serialized metrics pages, kept per API process and revalidated against the job's `metrics_version`.

Pollers ask for the same pages again and again while nothing changed; a 1,000-row page costs tens of
milliseconds to read and serialize, and a version check costs nothing (the job row is read anyway).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from cachetools import LRUCache

MAX_BYTES = 64 << 20  # per process

Key = tuple[uuid.UUID, int | None, int]

_cache: LRUCache[Key, tuple[int, bytes]] = LRUCache(maxsize=MAX_BYTES, getsizeof=lambda entry: len(entry[1]) + 200)
_lock = threading.Lock()  # sync routes run on a thread pool


def etag(version: int, after_epoch: int | None, limit: int) -> str:
    """Strong validator of one page of one job (the job is in the URL): its rows change only with the version."""
    return f'"m{version}.{"n" if after_epoch is None else after_epoch}.{limit}"'


def matches(if_none_match: str, tag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): `*`, or any listed tag equal to ours, W/ or not."""
    listed = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in listed or tag in listed


def page(key: Key, version: int, render: Callable[[], bytes]) -> bytes:
    """The page's bytes for `version`, rendered only when this process has no copy of that version.

    `version` must be read before `render` reads the rows: a page rendered meanwhile may then hold rows newer
    than its version (served until the next epoch, never older ones).
    """
    with _lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    body = render()
    if len(body) <= MAX_BYTES // 8:
        with _lock:
            current = _cache.get(key)
            if current is None or current[0] <= version:
                _cache[key] = (version, body)
    return body


def clear() -> None:
    with _lock:
        _cache.clear()
