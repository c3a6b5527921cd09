"""Serialized metrics pages, kept per API process and revalidated against the job's `metrics_version`.

Pollers ask for the same pages again and again while nothing changed; a 1,000-row page costs tens of
milliseconds to read and serialize, and a version check costs nothing (the job row is read anyway).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from cachetools import LRUCache

Key = tuple[uuid.UUID, int | None, int]

_lock = threading.Lock()  # sync routes run on a thread pool
_cache: LRUCache[Key, tuple[int, bytes]] | None = None


def etag(version: int, after_epoch: int | None, limit: int) -> str:
    """Strong validator of one page of one job (the job is in the URL): its rows change only with the version."""
    return f'"m{version}.{"n" if after_epoch is None else after_epoch}.{limit}"'


def matches(if_none_match: str, tag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): `*`, or any listed tag equal to ours, W/ or not."""
    listed = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in listed or tag in listed


def _store(max_bytes: int) -> LRUCache[Key, tuple[int, bytes]]:
    global _cache
    if _cache is None or _cache.maxsize != max_bytes:
        _cache = LRUCache(maxsize=max_bytes, getsizeof=lambda entry: len(entry[1]) + 200)
    return _cache


def page(key: Key, version: int, render: Callable[[], bytes], *, max_bytes: int) -> bytes:
    """The page's bytes for `version`, rendered only when this process has no copy of that version.

    `version` must be read before `render` reads the rows: a page rendered meanwhile may then hold rows newer
    than its version (served until the next epoch, never older ones). `max_bytes` 0 turns caching off.
    """
    if max_bytes <= 0:
        return render()
    with _lock:
        hit = _store(max_bytes).get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    body = render()
    if len(body) <= max_bytes // 8:  # one huge page must not flush everyone else's
        with _lock:
            cache = _store(max_bytes)
            current = cache.get(key)
            if current is None or current[0] <= version:
                cache[key] = (version, body)
    return body


def clear() -> None:
    with _lock:
        if _cache is not None:
            _cache.clear()
