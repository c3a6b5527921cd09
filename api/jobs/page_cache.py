"""Serialized metrics pages, kept per API process and revalidated against the job's `metrics_version`.

Pollers ask for the same pages again and again while nothing changed; a 1,000-row page costs tens of
milliseconds to read and serialize, and a version check costs nothing (the job row is read anyway).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from models.versioned_cache import VersionedCache

Key = tuple[uuid.UUID, int | None, int]

_pages: VersionedCache[bytes] = VersionedCache(lambda body: len(body) + 200, largest_share=1 / 8)


def etag(version: int, after_epoch: int | None, limit: int) -> str:
    """Strong validator of one page of one job (the job is in the URL): its rows change only with the version."""
    return f'"m{version}.{"n" if after_epoch is None else after_epoch}.{limit}"'


def matches(if_none_match: str, tag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): `*`, or any listed tag equal to ours, W/ or not."""
    listed = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in listed or tag in listed


def page(key: Key, version: int, render: Callable[[], bytes], *, max_bytes: int) -> bytes:
    """The page's bytes for `version`, rendered only when this process has no copy of that version.

    `version` must be read before `render` reads the rows: a page rendered meanwhile may then hold rows newer
    than its version (served until the next epoch, never older ones). `max_bytes` 0 turns caching off.
    """
    body = _pages.get(key, version, limit=max_bytes)
    if body is None:
        body = render()
        _pages.put(key, version, body, limit=max_bytes)
    return body


def clear() -> None:
    _pages.clear()
