"""The outbox sender: a thread that claims due deliveries and posts them from a small pool of threads.

Each target (scheme, host and port) has at most `per_target` tries in flight in this process, each tenant at
most `per_owner` (half the pool by default), and the rows of a full target or tenant are left in the outbox
rather than claimed, so a receiver that is slow or never answers holds its own slots only, and a tenant with
many such receivers its own share: every other tenant keeps the rest of the pool. A failed try is stored with its next time
(exponential backoff) and the row is claimed again then; after `PLATEAU_WEBHOOK_MAX_ATTEMPTS` tries it is
`dead`. Nothing is queued in memory: what is not yet sent waits in the database, whatever its number.
Several senders (processes) may run at once: claims never overlap (see `outbox.claim`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import structlog

from models.db import session_scope
from models.settings import Settings, get_settings
from models.tables import WebhookDelivery
from models.webhooks import delivery, outbox, signing

log = structlog.get_logger()


class Sender:
    def __init__(
        self,
        *,
        settings: Settings | None = None,
        workers: int = 8,
        per_target: int = 2,
        per_owner: int | None = None,
        poll_seconds: float = 0.5,
        lease_seconds: float | None = None,
    ):
        self.settings = settings or get_settings()
        self.workers = workers
        self.per_target = per_target
        self.poll_seconds = poll_seconds
        # Longer than any try can take: a row is only taken again from a sender that died holding it.
        self.lease_seconds = lease_seconds or self.settings.webhook_timeout_seconds * 3 + 30
        self._slots = outbox.Slots(per_target, per_owner or max(1, workers // 2))
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plateau-webhook")
        self._client = delivery.new_client(self.settings, connections=workers)
        self._thread = threading.Thread(target=self._run, name="plateau-webhook-sender", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        log.info("webhook sender started", workers=self.workers, per_target=self.per_target)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming and wait up to `timeout` for the tries in flight; rows not finished are sent again later."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def pump(self) -> int:
        """Claim what the free slots allow and hand it to the pool; returns how many rows were claimed."""
        with self._lock:
            free = self.workers - sum(self._slots.targets.values())
            slots = self._slots.copy()
        if free <= 0:
            return 0
        with session_scope() as s:
            rows = outbox.claim(s, limit=free, lease_seconds=self.lease_seconds, slots=slots)
        with self._lock:
            for row in rows:
                self._slots.targets[row.target] += 1
                self._slots.owners[row.owner] += 1
        for row in rows:
            try:
                self._pool.submit(self._send, row)
            except RuntimeError:  # the interpreter is exiting: the rows left are taken again when their lease lapses
                self._stop.set()
                break
        return len(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.pump()
            except Exception as exc:  # noqa: BLE001 - e.g. the database is away for a moment: try again
                log.warning("webhook sender pass failed", error=f"{type(exc).__name__}: {exc}")
                claimed = 0
            if not claimed:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _send(self, row: WebhookDelivery) -> None:
        try:
            result = delivery.post_once(
                row.url,
                signing.encode(row.body),
                event=row.event,
                delivery_id=row.delivery_id,
                settings=self.settings,
                client=self._client,
            )
            with session_scope() as s:
                state = outbox.record_try(
                    s,
                    row.id,
                    ok=result.ok,
                    retry=result.retry,
                    status_code=result.status_code,
                    error=result.error,
                    max_attempts=self.settings.webhook_max_attempts,
                    backoff_seconds=self.settings.webhook_backoff_seconds,
                    max_backoff_seconds=delivery.MAX_BACKOFF_SECONDS,
                )
            fields = {"job_id": str(row.job_id), "webhook_event": row.event, "delivery_id": row.delivery_id}
            if state == outbox.DELIVERED:
                log.info("webhook delivered", attempts=row.attempts + 1, status_code=result.status_code, **fields)
            elif state == outbox.DEAD:
                log.warning(
                    "webhook not delivered",
                    attempts=row.attempts + 1,
                    status_code=result.status_code,
                    error=result.error,
                    **fields,
                )
            else:
                log.info("webhook try failed; retried later", attempt=row.attempts + 1, error=result.error, **fields)
        except Exception as exc:  # noqa: BLE001 - the row stays claimed and is taken again once its lease lapses
            log.warning("webhook send crashed", delivery_id=row.delivery_id, error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._slots.give_back(row.target, row.owner)
            self._wake.set()


_sender: Sender | None = None
_sender_lock = threading.Lock()


def start_sender() -> Sender:
    """This process's sender, started once (the worker starts it when it is ready)."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = Sender().start()
        return _sender
