"""Re-sends work the broker may have lost, from the database: jobs never enqueued, and jobs whose worker died."""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import update

from models.db import session_scope
from models.lifecycle import expired_running, record_event, unenqueued_queued
from models.tables import Job, JobStatus, utcnow
from worker.queue import enqueue

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
            s.commit()
        for job in unenqueued_queued(s):
            sent += enqueue(s, job.id, reason="re-sent by the reconciler")
    if requeued or sent:
        log.info("reconciled", requeued=requeued, sent=sent)
    return {"requeued": requeued, "sent": sent}


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
