"""What a benchmark leaves on the shared Redis, removed."""

from __future__ import annotations

import redis


def drop_queue(redis_url: str, queue: str) -> None:
    """The queue, and the exchange bindings kombu keeps for it."""
    redis.Redis.from_url(redis_url).delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
