"""Webhook delivery: signed POSTs with bounded exponential-backoff retries, sent from a background thread.

`notify()` is what the lifecycle's after-transition hook calls, in the API and in the worker, once a
state change or a finding is committed. It only puts the event on an
in-process queue and returns, so neither a request nor training waits on a slow or dead receiver. One daemon thread
per process sends the queue in order: it reads the job's webhook from its stored spec, checks the
target again after DNS resolution, and POSTs.
"""

from __future__ import annotations

import atexit
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from contract.webhook import WebhookSpec
from models.settings import Settings, get_settings
from models.tables import Job, utcnow
from models.webhooks import signing, targets

log = structlog.get_logger()

USER_AGENT = "Plateau-Webhooks/1"
MAX_BACKOFF_SECONDS = 60.0
QUEUE_LIMIT = 1000


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    status_code: int | None
    error: str | None = None


class _RetryableStatus(Exception):
    def __init__(self, status_code: int):
        super().__init__(f"answered {status_code}")
        self.status_code = status_code


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


def deliver(
    url: str,
    body: dict[str, Any],
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST `body` to `url`, signed; retried on 5xx, 429 and network errors with exponential backoff.

    Returns how it went; never raises for a delivery problem. A refused target is not retried.
    """
    raw = signing.encode(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_HEADER: str(body.get("event")),
        signing.DELIVERY_HEADER: uuid.uuid4().hex,  # the same on every retry: receivers can drop duplicates
    }
    if settings.webhook_secret is not None:
        headers[signing.SIGNATURE_HEADER] = signing.sign(settings.webhook_secret.get_secret_value(), raw)
    attempts = 0
    own_client = client is None
    client = client or httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False)

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        target, extra, extensions = _pinned(url, settings.webhook_allow_private)
        sent = {**headers, **extra, signing.TIMESTAMP_HEADER: str(int(time.time()))}
        with client.stream("POST", target, content=raw, headers=sent, extensions=extensions) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise _RetryableStatus(response.status_code)
            return response.status_code

    retrying = Retrying(
        retry=retry_if_exception_type((_RetryableStatus, httpx.TransportError, socket.gaierror)),
        stop=stop_after_attempt(settings.webhook_max_attempts),
        wait=wait_exponential(multiplier=settings.webhook_backoff_seconds, max=MAX_BACKOFF_SECONDS),
        sleep=sleep,
        reraise=True,
    )
    try:
        status = retrying(attempt)
    except targets.TargetRefused as exc:
        return Delivery(False, attempts, None, f"target refused: {exc}")
    except _RetryableStatus as exc:
        return Delivery(False, attempts, exc.status_code, f"{exc} on the last of {attempts} attempts")
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return Delivery(False, attempts, None, f"{type(exc).__name__}: {exc} (after {attempts} attempts)")
    finally:
        if own_client:
            client.close()
    if 200 <= status < 300:
        return Delivery(True, attempts, status)
    return Delivery(False, attempts, status, f"answered {status}; not retried")


def _job_webhook(job_id: uuid.UUID) -> tuple[WebhookSpec | None, str | None]:
    from models.db import session_scope

    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None, None
        raw = (job.spec or {}).get("webhook")
        status = job.status
    if not raw:
        return None, status
    return WebhookSpec.model_validate(raw), status


def send_event(
    job_id: uuid.UUID | str,
    event: str,
    *,
    status: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
    settings: Settings | None = None,
) -> Delivery | None:
    """Deliver one event of a job to the webhook in its spec, now; None when the job has none or does not want it."""
    settings = settings or get_settings()
    job_id = uuid.UUID(str(job_id))
    hook, current = _job_webhook(job_id)
    if hook is None or not hook.wants(event):
        return None
    body = signing.payload(event, job_id, status or current, at or utcnow(), data)
    result = deliver(hook.url, body, settings=settings)
    if result.ok:
        log.info(
            "webhook delivered",
            job_id=str(job_id),
            webhook_event=event,
            attempts=result.attempts,
            status_code=result.status_code,
        )
    else:
        log.warning(
            "webhook not delivered",
            job_id=str(job_id),
            webhook_event=event,
            attempts=result.attempts,
            status_code=result.status_code,
            error=result.error,
        )
    return result


class Notifier:
    """An in-process queue and one daemon thread that sends it, in order."""

    def __init__(self, send: Callable[..., Any] = send_event, limit: int = QUEUE_LIMIT):
        self._send = send
        self._queue: queue.Queue[tuple[tuple, dict]] = queue.Queue(maxsize=limit)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def notify(
        self, job_id: uuid.UUID | str, event: str, *, status: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        """Queue an event and return at once. Never raises: a webhook problem must not touch the job."""
        try:
            self._ensure_thread()
            self._queue.put_nowait(((job_id, event), {"status": status, "data": data, "at": utcnow()}))
        except queue.Full:
            log.warning("webhook queue full; event dropped", job_id=str(job_id), webhook_event=event)
        except Exception:  # noqa: BLE001
            log.exception("webhook event not queued", job_id=str(job_id), webhook_event=event)

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the queue to be sent; True when it was."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="plateau-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            args, kwargs = self._queue.get()
            try:
                self._send(*args, **kwargs)
            except Exception:  # noqa: BLE001 - e.g. the database is away; the worker goes on
                log.exception("webhook delivery crashed", job_id=str(args[0]), webhook_event=args[1])
            finally:
                self._queue.task_done()


_notifier = Notifier()


def notify(
    job_id: uuid.UUID | str, event: str, *, status: str | None = None, data: dict[str, Any] | None = None
) -> None:
    """Send `event` of `job_id` to its webhook, if it has one, without waiting (see `Notifier.notify`)."""
    _notifier.notify(job_id, event, status=status, data=data)


@atexit.register
def _drain_at_exit() -> None:
    # A worker stopping right after a job ends still sends the final state, within a short bound.
    _notifier.flush(timeout=10.0)
