"""What is waiting on the broker, so the reconciler can tell a lost message from a slow queue."""

from __future__ import annotations

import redis

from models.settings import Settings

# Celery's message headers carry the arguments as `argsrepr`: "['<job id>']"
_ARGS = '"argsrepr": "[\''


def waiting_job_ids(settings: Settings) -> set[str] | None:
    """Job ids whose train message waits in the queue; None when the broker cannot be inspected."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=5)
        return _job_ids(raw.decode("utf-8", "replace") for raw in client.lrange(settings.queue, 0, -1))
    if settings.broker_url.startswith("filesystem://"):
        # kombu's filesystem transport: one `<stamp>_<uuid>.<queue>.msg` file per waiting message
        folder = settings.broker_dir.resolve() / "queue"
        if not folder.is_dir():
            return set()
        return _job_ids(_read(path) for path in folder.glob(f"*.{settings.queue}.msg"))
    return None


def _read(path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except FileNotFoundError:  # taken by a worker meanwhile
        return ""


def _job_ids(messages) -> set[str]:
    ids: set[str] = set()
    for text in messages:
        start = text.find(_ARGS)
        if start >= 0:
            start += len(_ARGS)
            ids.add(text[start : start + 36])
    return ids
