"""Put a job's id on the broker. Callers commit the job row first: the database is the source of truth."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlmodel import Session

from models.lifecycle import record_event
from models.tables import Job, JobStatus, utcnow
from worker.celery_app import TRAIN_TASK, app


def enqueue(session: Session, job_id: uuid.UUID, *, reason: str = "submitted") -> bool:
    """Send `train(job_id)`; on broker failure the job stays queued for the reconciler to send later."""
    try:
        app.send_task(TRAIN_TASK, args=[str(job_id)], retry=True,
                      retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
    except Exception as exc:  # noqa: BLE001 - any broker error leaves the job for the reconciler
        record_event(session, job_id, "enqueue_failed", reason=f"broker unavailable ({type(exc).__name__}); will retry")
        session.commit()
        return False
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued.value).values(enqueued_at=utcnow()))
    record_event(session, job_id, "enqueued", reason=reason)
    session.commit()
    return True
