"""What is waiting on the broker, so the reconciler can tell a lost message from a slow queue."""

from __future__ import annotations

import redis

from models.settings import Settings


def waiting_job_ids(settings: Settings) -> set[str] | None:
    """Job ids whose train message waits in the queue; None when the broker cannot be inspected."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=5)
    ids: set[str] = set()
    for raw in client.lrange(settings.queue, 0, -1):
        text = raw.decode("utf-8", "replace")
        # Celery's message headers carry the arguments as `argsrepr`: "['<job id>']"
        start = text.find('"argsrepr": "[\'')
        if start >= 0:
            start += len('"argsrepr": "[\'')
            ids.add(text[start:start + 36])
    return ids
