"""Re-sends work the broker may have lost, from the database: jobs never enqueued, and jobs whose worker died."""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import update

from models.db import session_scope
from datetime import timedelta

from models.lifecycle import expired_running, record_event, stale_queued, unenqueued_queued
from models.settings import get_settings
from worker.broker_view import waiting_job_ids
from models.tables import Job, JobStatus, utcnow
from worker.queue import enqueue
from worker.webhooks import notify

log = structlog.get_logger()


def reconcile_once() -> dict[str, int]:
    requeued = sent = 0
    with session_scope() as s:
        for job in expired_running(s):
            # Back to queued, so exactly one claimer wins; the attempt counter caps the loop.
            result = s.execute(
                update(Job).where(Job.id == job.id, Job.status == JobStatus.running.value, Job.lease_until < utcnow())
                .values(status=JobStatus.queued.value, enqueued_at=None, lease_until=None)
            )
            if result.rowcount == 1:
                record_event(s, job.id, "state", from_status="running", to_status="queued",
                             reason=f"lease expired (worker {job.worker_host} lost); requeued")
                requeued += 1
                if (job.spec or {}).get("webhook"):
                    notify(job.id, "queued", status="queued")
            s.commit()
        for job in unenqueued_queued(s):
            sent += enqueue(s, job.id, reason="re-sent by the reconciler")
        sent += _resend_lost(s)
    if requeued or sent:
        log.info("reconciled", requeued=requeued, sent=sent)
    return {"requeued": requeued, "sent": sent}


def _resend_lost(session) -> int:
    """Queued for a while, yet not waiting on the broker: the message was lost (a broker restart, a
    message stranded in a worker). Sending it again is safe, since only one worker can claim a job."""
    settings = get_settings()
    stale = stale_queued(session, utcnow() - timedelta(seconds=settings.requeue_after))
    if not stale:
        return 0
    waiting = waiting_job_ids(settings)
    if waiting is None:
        return 0
    sent = 0
    for job in stale:
        if str(job.id) not in waiting:
            sent += enqueue(session, job.id, reason="re-sent: its message was no longer on the broker")
    return sent


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
                log.warning("reconcile failed", error=str(exc))
            if self._done.wait(self.interval):
                return

    def close(self) -> None:
        self._done.set()
