"""Webhook delivery: one signed POST (`post_once`), and `deliver`, which retries it with exponential backoff.

Job events are not sent from here directly: the lifecycle stages them in the outbox (`models.webhooks.outbox`)
and a sender (`models.webhooks.sender`) claims and posts them with `post_once`, keeping the tries and the
backoff in the database. Imported on its own: it needs httpx.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from models.settings import Settings
from models.webhooks import signing, targets

USER_AGENT = "Plateau-Webhooks/1"
MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    status_code: int | None
    error: str | None = None


@dataclass(frozen=True)
class Try:
    """How one POST went: `retry` when another try may succeed (5xx, 429, network and DNS errors)."""

    ok: bool
    retry: bool
    status_code: int | None
    error: str | None = None


def backoff_seconds(attempts: int, settings: Settings) -> float:
    """The wait after the `attempts`-th failed try: the first wait, doubled each time, capped."""
    return min(settings.webhook_backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)


def new_client(settings: Settings, *, connections: int = 10) -> httpx.Client:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False, limits=limits
    )


def _pinned(url: str, allow_private: bool) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The request target: with the public-target rule on, the host is resolved, every address checked, and
    the connection made to the checked address (Host header and TLS SNI keep the name), so DNS cannot
    answer differently between the check and the connection."""
    target = httpx.URL(url)
    if allow_private:
        return target, {}, {}
    host = target.raw_host.decode("ascii")  # IDNA-encoded, as DNS, Host and SNI want it
    port = target.port or (443 if target.scheme == "https" else 80)
    addresses = targets.resolve_target(host, port)
    targets.check_resolved(host, addresses)
    if targets.literal_address(host) is not None:
        return target, {}, {}
    headers = {"Host": host if target.port is None else f"{host}:{target.port}"}
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    return target.copy_with(host=str(addresses[0])), headers, extensions


def post_once(url: str, raw: bytes, *, event: str, delivery_id: str, settings: Settings, client: httpx.Client) -> Try:
    """POST the encoded body `raw` once, signed; never raises for a delivery problem. A refused target and any
    answer other than 2xx, 5xx or 429 are final."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_HEADER: event,
        signing.DELIVERY_HEADER: delivery_id,  # the same on every try: receivers can drop duplicates
        signing.TIMESTAMP_HEADER: str(int(time.time())),
    }
    if settings.webhook_secret is not None:
        headers[signing.SIGNATURE_HEADER] = signing.sign(settings.webhook_secret.get_secret_value(), raw)
    try:
        target, extra, extensions = _pinned(url, settings.webhook_allow_private)
        with client.stream("POST", target, content=raw, headers={**headers, **extra}, extensions=extensions) as r:
            status = r.status_code
    except targets.TargetRefused as exc:
        return Try(False, False, None, f"target refused: {exc}")
    except (httpx.TransportError, socket.gaierror) as exc:
        return Try(False, True, None, f"{type(exc).__name__}: {exc}")
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return Try(False, False, None, f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Try(True, False, status)
    if status >= 500 or status == 429:
        return Try(False, True, status, f"answered {status}")
    return Try(False, False, status, f"answered {status}; not retried")


def deliver(
    url: str,
    body: dict[str, Any],
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    delivery_id: str | None = None,
) -> Delivery:
    """POST `body` to `url` now, retried in this thread on 5xx, 429 and network errors with exponential backoff.

    Returns how it went; never raises for a delivery problem. A refused target is not retried.
    """
    raw = signing.encode(body)
    delivery_id = delivery_id or uuid.uuid4().hex
    own_client = client is None
    client = client or new_client(settings, connections=1)
    attempts = 0
    try:
        while True:
            attempts += 1
            result = post_once(
                url, raw, event=str(body.get("event")), delivery_id=delivery_id, settings=settings, client=client
            )
            if result.ok:
                return Delivery(True, attempts, result.status_code)
            if not result.retry or attempts >= settings.webhook_max_attempts:
                suffix = f" on the last of {attempts} attempts" if result.retry else ""
                return Delivery(False, attempts, result.status_code, f"{result.error}{suffix}")
            sleep(backoff_seconds(attempts, settings))
    finally:
        if own_client:
            client.close()
