"""Re-sends work the broker may have lost, from the database: jobs never enqueued, and jobs whose worker died.

Each job is handled on its own: one that fails (a locked row, a broker blip) is logged and retried on the
next pass, and never keeps the others from being requeued or re-sent."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import structlog

from models.broker import enqueue
from models.db import session_scope
from models.lifecycle import recover_expired
from models.queries import expired_running, stale_queued, unenqueued_queued
from models.settings import get_settings
from models.tables import Job, utcnow
from worker.broker_view import waiting_job_ids

log = structlog.get_logger()


def reconcile_once() -> dict[str, int]:
    counts = {"requeued": 0, "cancelled": 0, "sent": 0, "failed": 0}
    with session_scope() as s:
        expired = expired_running(s)
    for job in expired:
        outcome = _per_job("recover a lost worker's job", job.id, _recover_expired, job)
        if outcome:
            counts[outcome] += 1
    with session_scope() as s:
        unsent = [j.id for j in unenqueued_queued(s)]
    for job_id in unsent:
        counts["sent"] += _per_job("send a queued job", job_id, _send, job_id, "re-sent by the reconciler") or 0
    for job_id in _lost_messages():
        counts["sent"] += (
            _per_job(
                "re-send a lost message", job_id, _send, job_id, "re-sent: its message was no longer on the broker"
            )
            or 0
        )
    counts["probes"] = _recover_probes()
    try:  # autopilot lineages whose current job ended (the sweep never raises; this guards its import too)
        __import__("models.autopilot.hooks", fromlist=["sweep_safely"]).sweep_safely()
    except Exception as exc:  # noqa: BLE001 - never breaks the reconcile pass
        log.warning("reconcile step failed", step="advance autopilot lineages", error=f"{type(exc).__name__}: {exc}")
    if any(counts.values()):
        log.info("reconciled", **counts)
    return counts


def _recover_probes() -> int:
    """Probes whose worker stopped renewing their lease go back to the queue (or end, if cancelled)."""
    from models import probes

    n = 0
    try:
        with session_scope() as s:
            for probe in probes.expired_running(s):
                n += probes.recover_expired(s, probe) is not None
    except Exception as exc:  # noqa: BLE001 - next pass
        log.warning("reconcile step failed", step="recover lost probes", error=f"{type(exc).__name__}: {exc}")
    return n


def _per_job(what: str, job_id, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - one job's trouble must not stop the pass; it is tried next pass
        log.warning("reconcile step failed", step=what, job_id=str(job_id), error=f"{type(exc).__name__}: {exc}")
        return "failed" if fn is _recover_expired else 0


def _recover_expired(job: Job) -> str | None:
    """Its worker stopped renewing the lease: the lifecycle ends or requeues it; a requeued job is re-sent."""
    with session_scope() as s:
        outcome = recover_expired(s, job)
        if outcome == "requeued":
            enqueue(s, job.id, reason="re-sent by the reconciler")
        return outcome


def _send(job_id, reason: str) -> int:
    with session_scope() as s:
        return int(enqueue(s, job_id, reason=reason))


def _lost_messages() -> list:
    """Queued for a while, yet not waiting on the broker: the message was lost (a broker restart, a wiped
    broker folder, a message stranded in a worker). Sending it again is safe: only one worker can claim a job."""
    settings = get_settings()
    try:
        with session_scope() as s:
            stale = [j.id for j in stale_queued(s, utcnow() - timedelta(seconds=settings.requeue_after))]
        if not stale:
            return []
        waiting = waiting_job_ids(settings)
    except Exception as exc:  # noqa: BLE001 - the broker or database is away; next pass
        log.warning("reconcile step failed", step="look for lost messages", error=f"{type(exc).__name__}: {exc}")
        return []
    if waiting is None:
        return []
    return [job_id for job_id in stale if str(job_id) not in waiting]


class Reconciler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(name="reconciler", daemon=True)
        self.interval = interval
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            try:
                reconcile_once()
            except Exception as exc:  # noqa: BLE001 - try again next pass
                log.warning("reconcile failed", error=f"{type(exc).__name__}: {exc}")
            if self._done.wait(self.interval):
                return

    def close(self) -> None:
        self._done.set()


def main() -> None:
    """`python -m worker.reconciler`: passes forever, as the embedded launcher runs it beside its worker."""
    from models.db import prepare_database
    from models.logs import configure_logging
    from worker.parent_watch import watch_parent

    configure_logging()
    parent = os.environ.get("PLATEAU_PARENT_PID", "")
    if parent.isdigit():
        watch_parent(int(parent), grace=10)
    prepare_database()
    log.info("reconciler started", interval_s=get_settings().reconcile_interval)
    Reconciler(get_settings().reconcile_interval).run()


if __name__ == "__main__":
    main()
