"""Job state changes. Each one is a single conditional UPDATE, so racing processes cannot both win."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from models.tables import EpochMetric, Job, JobEvent, JobStatus, utcnow


class IllegalTransition(Exception):
    """The job's current state does not allow the requested change (HTTP 409)."""


def record_event(
    session: Session,
    job_id: uuid.UUID,
    kind: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, from_status=from_status, to_status=to_status, reason=reason, data=data))


@dataclass(frozen=True)
class Claim:
    job: Job | None
    reason: str  # why it was or was not claimed


def claim(session: Session, job_id: uuid.UUID, *, worker_host: str, lease_seconds: float, max_attempts: int) -> Claim:
    """Take a queued job, or a running one whose lease has lapsed (its worker died)."""
    now = utcnow()
    before = session.get(Job, job_id)
    if before is None:
        return Claim(None, "no such job")
    previous = before.status
    session.expunge(before)
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(Job.status == JobStatus.queued.value, and_(Job.status == JobStatus.running.value, Job.lease_until < now)),
        )
        .values(
            status=JobStatus.running.value,
            attempts=Job.attempts + 1,
            worker_host=worker_host,
            lease_until=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
        )
    )
    if result.rowcount != 1:
        session.rollback()
        return Claim(None, f"job is {previous}" + (" with a live lease" if previous == "running" else ""))
    job = session.get(Job, job_id)
    session.refresh(job)
    if job.attempts > max_attempts:
        _set_terminal(
            session, job, JobStatus.failed, error=f"gave up after {max_attempts} attempts (the worker was lost each time)"
        )
        session.commit()
        return Claim(None, "attempt limit reached")
    reason = "started" if job.attempts == 1 else f"resumed from the last checkpoint (attempt {job.attempts})"
    record_event(session, job_id, "state", from_status=previous, to_status="running", reason=reason,
                 data={"attempt": job.attempts, "worker_host": worker_host})
    session.commit()
    return Claim(job, reason)


def renew_lease(session: Session, job_id: uuid.UUID, *, worker_host: str, lease_seconds: float) -> bool | None:
    """Extend the lease; returns whether a cancel was requested, or None when the job is no longer ours."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running.value, Job.worker_host == worker_host)
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    session.commit()
    if result.rowcount != 1:
        return None
    return bool(session.exec(select(Job.cancel_requested).where(Job.id == job_id)).one())


def _set_terminal(session: Session, job: Job, status: JobStatus, *, error: str | None = None,
                  stop_reason: str | None = None) -> None:
    previous = job.status
    job.status = status.value
    job.finished_at = utcnow()
    job.lease_until = None
    job.error = error
    job.stop_reason = stop_reason
    session.add(job)
    record_event(session, job.id, "state", from_status=previous, to_status=status.value, reason=error or stop_reason)


def finish(session: Session, job_id: uuid.UUID, status: JobStatus, *, worker_host: str, error: str | None = None,
           stop_reason: str | None = None, model_path: str | None = None) -> bool:
    """End a running job that this worker holds. False when it is no longer ours."""
    job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.status != JobStatus.running.value or job.worker_host != worker_host:
        session.rollback()
        return False
    if model_path:
        job.model_path = model_path
    _set_terminal(session, job, status, error=error, stop_reason=stop_reason)
    session.commit()
    return True


def release(session: Session, job_id: uuid.UUID, *, worker_host: str, reason: str) -> bool:
    """Hand a running job back to the queue (worker shutting down); the attempt is not counted."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running.value, Job.worker_host == worker_host)
        .values(status=JobStatus.queued.value, lease_until=None, attempts=Job.attempts - 1, enqueued_at=None)
    )
    if result.rowcount == 1:
        record_event(session, job_id, "state", from_status="running", to_status="queued", reason=reason)
    session.commit()
    return result.rowcount == 1


def request_cancel(session: Session, job: Job) -> Job:
    """queued → cancelled at once; running → flagged, the worker stops at the next batch; else 409."""
    if job.status == JobStatus.queued.value:
        result = session.execute(
            update(Job).where(Job.id == job.id, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=utcnow(), stop_reason="cancelled before it started")
        )
        if result.rowcount == 1:
            record_event(session, job.id, "state", from_status="queued", to_status="cancelled",
                         reason="cancelled before it started")
            session.commit()
            session.refresh(job)
            return job
        session.rollback()
        session.refresh(job)  # it started meanwhile: fall through to the running case
    if job.status == JobStatus.running.value:
        # Its lease lapsed: no worker is left to stop at a batch boundary, so the cancel takes effect now.
        result = session.execute(
            update(Job).where(Job.id == job.id, Job.status == JobStatus.running.value, Job.lease_until < utcnow())
            .values(status=JobStatus.cancelled.value, finished_at=utcnow(), lease_until=None, cancel_requested=True,
                    stop_reason="cancelled by request")
        )
        if result.rowcount == 1:
            record_event(session, job.id, "state", from_status="running", to_status="cancelled",
                         reason=f"cancelled by request; lease expired (worker {job.worker_host} lost)")
            session.commit()
            session.refresh(job)
            return job
        session.rollback()
        session.refresh(job)
    if job.status == JobStatus.running.value:
        if not job.cancel_requested:
            job.cancel_requested = True
            session.add(job)
            record_event(session, job.id, "cancel_requested", reason="the worker stops at the next batch boundary")
            session.commit()
            session.refresh(job)
        return job
    raise IllegalTransition(f"job is {job.status}; only queued or running jobs can be cancelled")


def upsert_epoch(session: Session, job_id: uuid.UUID, row: dict[str, Any]) -> None:
    """One row per (job, epoch): a re-run epoch replaces the earlier row instead of adding one."""
    values = {k: v for k, v in row.items() if k in EpochMetric.model_fields and k not in ("id", "job_id")}
    values["recorded_at"] = utcnow()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(EpochMetric).values(job_id=job_id, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "epoch"], set_={k: stmt.excluded[k] for k in values if k != "epoch"}
    )
    session.execute(stmt)
    # same transaction: a reader never sees the new row under the old version
    session.execute(update(Job).where(Job.id == job_id).values(metrics_version=Job.metrics_version + 1))
    session.commit()


def expired_running(session: Session, now: datetime | None = None) -> list[Job]:
    now = now or utcnow()
    return list(session.exec(select(Job).where(Job.status == JobStatus.running.value, Job.lease_until < now)).all())


def unenqueued_queued(session: Session) -> list[Job]:
    return list(session.exec(select(Job).where(Job.status == JobStatus.queued.value, Job.enqueued_at.is_(None))).all())


def stale_queued(session: Session, older_than: datetime) -> list[Job]:
    return list(session.exec(select(Job).where(Job.status == JobStatus.queued.value,
                                               Job.enqueued_at < older_than)).all())
