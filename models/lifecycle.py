"""Job state changes and their consequences, in one place.

Every change of a job's state is a function here, each a single conditional UPDATE (or a row lock), so racing
processes cannot both win. Each goes through one after-transition hook, `_transitioned`, which publishes the
change to the subscribers listed in `models.transitions.SUBSCRIBERS`: the state event and the job's webhook
delivery (`models.webhooks.outbox`) in the same transaction, and the autopilot's advance once a job ended. The
change is logged once it commits; a sender delivers the outbox later. The jobs-by-state and transitions metrics
are read from the event rows at scrape time. Findings reach the webhook the same way (`record_event`). Nobody
else sends a job's webhook.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import and_, event, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

from models import transitions
from models.tables import EpochMetric, Job, JobEvent, JobStatus, utcnow
from models.webhooks import outbox

log = structlog.get_logger()

# Events other than state changes that a job's webhook may ask for (`contract.webhook`).
WEBHOOK_KINDS = frozenset({"finding"})
# State changes logged once their transaction commits; a rollback drops them.
_COMMITTED_LOG = "plateau.state_changes"


class IllegalTransition(Exception):
    """The job's current state does not allow the requested change (HTTP 409)."""


@dataclass(frozen=True)
class Fence:
    """What a worker holds while it trains a job: the attempt it claimed, on its host. Every write the worker
    makes about the job carries it, and the database refuses the write once another claim, a cancel or a
    requeue has taken the job from that attempt (a paused worker that wakes up writes nothing)."""

    job_id: uuid.UUID
    attempt: int
    worker_host: str


class LostJob(Exception):
    """The fenced write was refused: this attempt no longer owns the job, so the worker abandons it."""


def _held(job_id: uuid.UUID, worker_host: str, attempt: int | None = None) -> tuple:
    """The job is running on `worker_host` (under `attempt`, when given): the condition of every owner's write."""
    held = (Job.id == job_id, Job.status == JobStatus.running.value, Job.worker_host == worker_host)
    return held if attempt is None else (*held, Job.attempts == attempt)


def hold(session: Session, fence: Fence) -> None:
    """Takes the job's row for the caller's transaction if `fence` still owns the job, else rolls back and raises
    LostJob. A conditional UPDATE, so the check and the writes after it commit together: PostgreSQL locks the
    row until then (a racing cancel or requeue waits, or wins first and this matches nothing) and SQLite holds
    its single write lock."""
    result = session.execute(
        update(Job).where(*_held(fence.job_id, fence.worker_host, fence.attempt)).values(attempts=Job.attempts)
    )
    if result.rowcount != 1:
        session.rollback()
        raise LostJob(f"job {fence.job_id} is no longer held by attempt {fence.attempt} on {fence.worker_host}")


def record_event(
    session: Session,
    job_id: uuid.UUID,
    kind: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    webhook_data: dict[str, Any] | None = None,
    job: Job | None = None,
    fence: Fence | None = None,
) -> None:
    """Add one event row. A state change or a finding also stages the job's webhook delivery in the same
    transaction (with `webhook_data`, or the reason and data): both commit together, and a rollback drops both.
    `job`, when the caller holds it, spares a lookup of the job's webhook. A worker passes its `fence` (LostJob)."""
    if fence is not None:
        hold(session, fence)
    session.add(
        JobEvent(job_id=job_id, kind=kind, from_status=from_status, to_status=to_status, reason=reason, data=data)
    )
    event_name = to_status if kind == "state" else kind if kind in WEBHOOK_KINDS else None
    if event_name is None:
        return
    if kind == "state":
        session.info.setdefault(_COMMITTED_LOG, []).append((job_id, from_status, to_status))
    job = job or session.get(Job, job_id)
    if webhook_data is None:
        webhook_data = {"reason": reason, "finding": data} if kind == "finding" else {"reason": reason, **(data or {})}
    outbox.stage(session, job, event_name, status=to_status or (job.status if job else None), data=webhook_data)


def _transitioned(
    session: Session,
    job_id: uuid.UUID,
    from_status: str | None,
    to_status: str,
    *,
    reason: str | None,
    data: dict[str, Any] | None = None,
    webhook_data: dict[str, Any] | None = None,
    job: Job | None = None,
) -> None:
    """The after-transition hook every state change goes through: its subscribers are `models.transitions`'."""
    transitions.publish(
        session,
        transitions.Transition(job_id, from_status, to_status, reason, data, webhook_data, job),
    )


@event.listens_for(OrmSession, "after_commit")
def _log_committed(session: OrmSession) -> None:
    for job_id, from_status, to_status in session.info.pop(_COMMITTED_LOG, []):
        log.info("job state changed", job_id=str(job_id), from_status=from_status, to_status=to_status)


@event.listens_for(OrmSession, "after_transaction_end")
def _drop_uncommitted(session: OrmSession, transaction) -> None:
    if transaction.parent is None:  # rolled back or closed without a commit: the changes did not happen
        session.info.pop(_COMMITTED_LOG, None)


transitions.listen()  # after the listeners above: a change's log line and webhook come first


def submit(session: Session, job: Job) -> None:
    """None → queued: add a new job; the caller commits (and then sends it to the broker)."""
    job.status = JobStatus.queued.value
    session.add(job)
    _transitioned(
        session,
        job.id,
        None,
        JobStatus.queued.value,
        reason="submitted",
        data={"parent_id": str(job.parent_id)} if job.parent_id else None,
        webhook_data={},
        job=job,
    )


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
            or_(
                Job.status == JobStatus.queued.value, and_(Job.status == JobStatus.running.value, Job.lease_until < now)
            ),
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
            session,
            job,
            JobStatus.failed,
            error=f"gave up after {max_attempts} attempts (the worker was lost each time)",
        )
        session.commit()
        return Claim(None, "attempt limit reached")
    reason = "started" if job.attempts == 1 else f"resumed from the last checkpoint (attempt {job.attempts})"
    _transitioned(
        session,
        job_id,
        previous,
        JobStatus.running.value,
        reason=reason,
        data={"attempt": job.attempts, "worker_host": worker_host},
        webhook_data={"attempt": job.attempts, "reason": reason},
        job=job,
    )
    session.commit()
    return Claim(job, reason)


def renew_lease(
    session: Session, job_id: uuid.UUID, *, worker_host: str, lease_seconds: float, attempt: int | None = None
) -> bool | None:
    """Extend the lease; returns whether a cancel was requested, or None when the job is no longer ours."""
    result = session.execute(
        update(Job)
        .where(*_held(job_id, worker_host, attempt))
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    session.commit()
    if result.rowcount != 1:
        return None
    return bool(session.exec(select(Job.cancel_requested).where(Job.id == job_id)).one())


def _set_terminal(
    session: Session, job: Job, status: JobStatus, *, error: str | None = None, stop_reason: str | None = None
) -> None:
    previous = job.status
    job.status = status.value
    job.finished_at = utcnow()
    job.lease_until = None
    job.error = error
    job.stop_reason = stop_reason
    session.add(job)
    _transitioned(
        session,
        job.id,
        previous,
        status.value,
        reason=error or stop_reason,
        webhook_data={k: v for k, v in (("error", error), ("stop_reason", stop_reason)) if v},
        job=job,
    )


def finish(
    session: Session,
    job_id: uuid.UUID,
    status: JobStatus,
    *,
    worker_host: str,
    attempt: int | None = None,
    error: str | None = None,
    stop_reason: str | None = None,
    model_path: str | None = None,
) -> bool:
    """End a running job that this worker (under `attempt`, when given) holds. False when it is no longer ours."""
    # One conditional UPDATE, so no cancel or requeue can land between the ownership check and the write.
    result = session.execute(
        update(Job)
        .where(*_held(job_id, worker_host, attempt))
        .values(
            status=status.value,
            finished_at=utcnow(),
            lease_until=None,
            error=error,
            stop_reason=stop_reason,
            model_path=model_path or Job.model_path,
        )
    )
    if result.rowcount != 1:
        session.rollback()
        return False
    _transitioned(
        session,
        job_id,
        JobStatus.running.value,
        status.value,
        reason=error or stop_reason,
        webhook_data={k: v for k, v in (("error", error), ("stop_reason", stop_reason)) if v},
    )
    session.commit()
    return True


def release(
    session: Session,
    job_id: uuid.UUID,
    *,
    worker_host: str,
    reason: str,
    attempt: int | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Hand a running job back to the queue (worker shutting down, artifacts disk full); the attempt is not
    counted."""
    result = session.execute(
        update(Job)
        .where(*_held(job_id, worker_host, attempt))
        .values(status=JobStatus.queued.value, lease_until=None, attempts=Job.attempts - 1, enqueued_at=None)
    )
    if result.rowcount == 1:
        _transitioned(session, job_id, JobStatus.running.value, JobStatus.queued.value, reason=reason, data=data)
    session.commit()
    return result.rowcount == 1


def infra_release(session: Session, fence: Fence, *, kind: str, what: str, data: dict[str, Any], limit: int) -> str:
    """An infrastructure fault (a full artifacts disk) stopped the attempt: not the job's fault, so the job goes
    back to queued without counting the attempt, with a `kind` event saying `what`; the reconciler sends it
    again on its next pass and it resumes from its last checkpoint. After `limit` such returns it fails, naming
    `what`. Returns "requeued", "failed", or "lost" when the attempt no longer held the job (nothing written)."""
    returns = session.exec(select(func.count()).where(JobEvent.job_id == fence.job_id, JobEvent.kind == kind)).one()
    if returns >= limit:
        error = f"{what}; gave up after {returns} returns to the queue"
        ended = finish(
            session, fence.job_id, JobStatus.failed, worker_host=fence.worker_host, attempt=fence.attempt, error=error
        )
        return "failed" if ended else "lost"
    try:
        record_event(session, fence.job_id, kind, reason=what, data=data, fence=fence)
    except LostJob:
        return "lost"
    reason = f"{what}; back to the queue, resumes from its last checkpoint (return {returns + 1} of {limit})"
    released = release(
        session, fence.job_id, worker_host=fence.worker_host, attempt=fence.attempt, reason=reason, data=data
    )
    return "requeued" if released else "lost"


def _lease_lapsed(job_id: uuid.UUID):
    return (Job.id == job_id, Job.status == JobStatus.running.value, Job.lease_until < utcnow())


def _cancel_lapsed(session: Session, job: Job) -> bool:
    """running with a lapsed lease → cancelled: no worker is left to stop at a batch boundary. Commits."""
    result = session.execute(
        update(Job)
        .where(*_lease_lapsed(job.id))
        .values(
            status=JobStatus.cancelled.value,
            finished_at=utcnow(),
            lease_until=None,
            cancel_requested=True,
            stop_reason="cancelled by request",
        )
    )
    if result.rowcount != 1:
        session.rollback()
        return False
    _transitioned(
        session,
        job.id,
        JobStatus.running.value,
        JobStatus.cancelled.value,
        reason=f"cancelled by request; lease expired (worker {job.worker_host} lost)",
        webhook_data={},
        job=job,
    )
    session.commit()
    return True


def request_cancel(session: Session, job: Job) -> Job:
    """queued → cancelled at once; running → flagged, the worker stops at the next batch; else 409."""
    if job.status == JobStatus.queued.value:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=utcnow(), stop_reason="cancelled before it started")
        )
        if result.rowcount == 1:
            _transitioned(
                session,
                job.id,
                JobStatus.queued.value,
                JobStatus.cancelled.value,
                reason="cancelled before it started",
                webhook_data={},
                job=job,
            )
            session.commit()
            session.refresh(job)
            return job
        session.rollback()
        session.refresh(job)  # it started meanwhile: fall through to the running case
    if job.status == JobStatus.running.value:
        # Its lease lapsed: no worker is left to stop at a batch boundary, so the cancel takes effect now.
        if _cancel_lapsed(session, job):
            session.refresh(job)
            return job
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


def recover_expired(session: Session, job: Job) -> str | None:
    """A running job whose worker stopped renewing its lease: cancelled if a cancel was asked for, else back to
    queued (exactly one claimer can then win; the attempt counter caps the loop). Returns "cancelled",
    "requeued", or None when it changed meanwhile. The caller sends a requeued job to the broker."""
    if job.cancel_requested:
        return "cancelled" if _cancel_lapsed(session, job) else None
    result = session.execute(
        update(Job)
        .where(*_lease_lapsed(job.id))
        .values(status=JobStatus.queued.value, enqueued_at=None, lease_until=None)
    )
    if result.rowcount != 1:
        session.rollback()
        return None
    _transitioned(
        session,
        job.id,
        JobStatus.running.value,
        JobStatus.queued.value,
        reason=f"lease expired (worker {job.worker_host} lost); requeued",
        webhook_data={},
        job=job,
    )
    session.commit()
    return "requeued"


def upsert_epoch(session: Session, job_id: uuid.UUID, row: dict[str, Any], *, fence: Fence | None = None) -> None:
    """One row per (job, epoch): a re-run epoch replaces the earlier row instead of adding one. A worker passes
    its `fence`: the row is written only while that attempt holds the job (LostJob otherwise)."""
    if fence is not None:
        hold(session, fence)
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
