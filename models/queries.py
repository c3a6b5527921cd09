"""Read-only questions about jobs that the reconciler asks; the changes of state are in `models.lifecycle`."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from models.tables import Job, JobStatus, utcnow


def expired_running(session: Session, now: datetime | None = None) -> list[Job]:
    now = now or utcnow()
    return list(session.exec(select(Job).where(Job.status == JobStatus.running.value, Job.lease_until < now)).all())


def unenqueued_queued(session: Session) -> list[Job]:
    return list(session.exec(select(Job).where(Job.status == JobStatus.queued.value, Job.enqueued_at.is_(None))).all())


def stale_queued(session: Session, older_than: datetime) -> list[Job]:
    return list(
        session.exec(select(Job).where(Job.status == JobStatus.queued.value, Job.enqueued_at < older_than)).all()
    )
