"""Probe rows and their states: request, send, claim, renew, finish, cancel, recover; and what they found.

Like jobs, every state change is one conditional UPDATE, so racing workers and API calls cannot both win; the
database is the source of truth and the broker only carries `probe(probe_id)`."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import and_, or_, update
from sqlmodel import Session, select

from analysis.findings import Remedy
from analysis.remedies.data import exclude_label_issues
from contract.probes import DEFAULT_BUDGET_SECONDS, LabelCheckResult
from contract.resolved import ResolvedSpec
from models.lifecycle import IllegalTransition, record_event
from models.paths import PathEscape, resolve_under
from models.tables import Job, JobStatus, Probe, utcnow

log = structlog.get_logger()

PROBE_TASK = "plateau.probe"
ACTIVE = (JobStatus.queued.value, JobStatus.running.value)


class ProbeBusy(Exception):
    """A probe of that name is already queued or running for the job (HTTP 409)."""


def budget_of(job: Job, asked: int | None) -> int:
    if asked is not None:
        return asked
    return int(((job.spec or {}).get("diagnosis") or {}).get("budget_seconds") or DEFAULT_BUDGET_SECONDS)


def request(
    session: Session, *, job: Job, names: list[str], budget_seconds: int | None, trigger: str = "request"
) -> list[Probe]:
    """Queue one probe row per name, commit, then send each to the workers.

    A stall triggers the probes once per job (a resumed attempt detects the same stall again); a request for a
    probe that is already queued or running is refused, as it would measure the same thing twice."""
    if (
        trigger == "stall"
        and session.exec(select(Probe.id).where(Probe.job_id == job.id, Probe.trigger == "stall")).first()
    ):
        return []
    busy = session.exec(
        select(Probe.name).where(Probe.job_id == job.id, Probe.status.in_(ACTIVE), Probe.name.in_(names))
    ).all()
    if busy:
        raise ProbeBusy(f"probe(s) {sorted(set(busy))} of job {job.id} are already queued or running")
    budget = budget_of(job, budget_seconds)
    rows = [Probe(job_id=job.id, name=name, trigger=trigger, inputs={"budget_seconds": budget}) for name in names]
    session.add_all(rows)
    record_event(
        session,
        job.id,
        "probes",
        reason=f"probes requested ({trigger}): {', '.join(names)}",
        data={"probes": {r.name: str(r.id) for r in rows}, "trigger": trigger, "budget_seconds": budget},
    )
    session.commit()
    for row in rows:
        send(session, row.id)
    for row in rows:
        session.refresh(row)
    return rows


def send(session: Session, probe_id: uuid.UUID) -> bool:
    """Send `probe(probe_id)`; a broker that cannot take it fails the probe with a reason (ask again later)."""
    from models.broker import producer

    try:
        producer().send_task(
            PROBE_TASK,
            args=[str(probe_id)],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        return True
    except Exception as exc:  # noqa: BLE001 - the row says why; nothing else is lost
        session.execute(
            update(Probe)
            .where(Probe.id == probe_id, Probe.status == JobStatus.queued.value)
            .values(
                status=JobStatus.failed.value,
                finished_at=utcnow(),
                error=f"could not reach the workers ({type(exc).__name__}); request the probe again",
            )
        )
        session.commit()
        return False


def list_for_job(session: Session, job_id: uuid.UUID) -> list[Probe]:
    return list(session.exec(select(Probe).where(Probe.job_id == job_id).order_by(Probe.created_at.desc())).all())


def get(session: Session, job_id: uuid.UUID, probe_id: uuid.UUID) -> Probe | None:
    probe = session.get(Probe, probe_id)
    return probe if probe is not None and probe.job_id == job_id else None


def request_cancel(session: Session, probe: Probe) -> Probe:
    """queued → cancelled at once; running → flagged, its worker stops at the next step; ended → 409."""
    now = utcnow()
    done = session.execute(
        update(Probe)
        .where(Probe.id == probe.id, Probe.status == JobStatus.queued.value)
        .values(status=JobStatus.cancelled.value, cancel_requested=True, finished_at=now, error="cancelled by request")
    )
    if done.rowcount == 0:
        flagged = session.execute(
            update(Probe)
            .where(Probe.id == probe.id, Probe.status == JobStatus.running.value)
            .values(cancel_requested=True)
        )
        if flagged.rowcount == 0:
            session.rollback()
            session.refresh(probe)
            raise IllegalTransition(f"probe is {probe.status}; only queued or running probes can be cancelled")
    session.commit()
    session.refresh(probe)
    return probe


def cancel_for_job(session: Session, job_id: uuid.UUID) -> int:
    """Cancelling a job cancels its queued probes and asks its running ones to stop."""
    n = 0
    for probe in session.exec(select(Probe).where(Probe.job_id == job_id, Probe.status.in_(ACTIVE))).all():
        try:
            request_cancel(session, probe)
            n += 1
        except IllegalTransition:  # it ended meanwhile
            pass
    return n


def claim(
    session: Session, probe_id: uuid.UUID, *, worker_host: str, lease_seconds: float, max_attempts: int
) -> tuple[Probe | None, str]:
    """Take a queued probe, or a running one whose lease lapsed (its worker died)."""
    now = utcnow()
    probe = session.get(Probe, probe_id)
    if probe is None:
        return None, "no such probe"
    if probe.attempts >= max_attempts and probe.status == JobStatus.queued.value:
        _end(session, probe_id, JobStatus.failed, error=f"gave up after {probe.attempts} attempts (worker lost)")
        return None, "too many attempts"
    result = session.execute(
        update(Probe)
        .where(
            Probe.id == probe_id,
            Probe.cancel_requested.is_(False),
            or_(
                Probe.status == JobStatus.queued.value,
                and_(Probe.status == JobStatus.running.value, Probe.lease_until < now),
            ),
        )
        .values(
            status=JobStatus.running.value,
            attempts=Probe.attempts + 1,
            worker_host=worker_host,
            lease_until=now + timedelta(seconds=lease_seconds),
            started_at=now,
        )
    )
    session.commit()
    if result.rowcount != 1:
        session.refresh(probe)
        return None, f"probe is {probe.status}"
    session.refresh(probe)
    return probe, "claimed"


def renew(session: Session, probe_id: uuid.UUID, *, worker_host: str, lease_seconds: float) -> bool | None:
    """Extend the lease. None: the probe is no longer ours; True: a cancel was asked for; False: carry on."""
    result = session.execute(
        update(Probe)
        .where(Probe.id == probe_id, Probe.status == JobStatus.running.value, Probe.worker_host == worker_host)
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    session.commit()
    if result.rowcount != 1:
        return None
    return bool(session.exec(select(Probe.cancel_requested).where(Probe.id == probe_id)).one())


def finish(
    session: Session,
    probe_id: uuid.UUID,
    status: JobStatus,
    *,
    worker_host: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    duration_seconds: float | None = None,
) -> bool:
    """End a running probe this worker holds; False when it is no longer ours."""
    return _end(
        session, probe_id, status, worker_host=worker_host, result=result, error=error, duration=duration_seconds
    )


def _end(
    session: Session,
    probe_id: uuid.UUID,
    status: JobStatus,
    *,
    worker_host: str | None = None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    duration: float | None = None,
) -> bool:
    where = [Probe.id == probe_id, Probe.status.in_(ACTIVE)]
    if worker_host is not None:
        where += [Probe.status == JobStatus.running.value, Probe.worker_host == worker_host]
    done = session.execute(
        update(Probe)
        .where(*where)
        .values(
            status=status.value,
            result=result,
            error=error,
            finished_at=utcnow(),
            lease_until=None,
            duration_seconds=duration,
        )
    )
    session.commit()
    return done.rowcount == 1


def release(session: Session, probe_id: uuid.UUID, *, worker_host: str) -> bool:
    """Hand a running probe back (its worker is shutting down): queued again, sent again, the attempt not counted."""
    result = session.execute(
        update(Probe)
        .where(Probe.id == probe_id, Probe.status == JobStatus.running.value, Probe.worker_host == worker_host)
        .values(status=JobStatus.queued.value, lease_until=None, attempts=Probe.attempts - 1)
    )
    session.commit()
    if result.rowcount == 1:
        send(session, probe_id)
    return result.rowcount == 1


def expired_running(session: Session, now: datetime | None = None) -> list[Probe]:
    now = now or utcnow()
    return list(
        session.exec(select(Probe).where(Probe.status == JobStatus.running.value, Probe.lease_until < now)).all()
    )


def recover_expired(session: Session, probe: Probe) -> str | None:
    """A running probe whose worker stopped renewing its lease: cancelled if asked to, else queued and re-sent."""
    values: dict[str, Any] = {"lease_until": None}
    if probe.cancel_requested:
        values.update(status=JobStatus.cancelled.value, finished_at=utcnow(), error="cancelled by request")
    else:
        values.update(status=JobStatus.queued.value)
    result = session.execute(
        update(Probe)
        .where(Probe.id == probe.id, Probe.status == JobStatus.running.value, Probe.lease_until < utcnow())
        .values(**values)
    )
    session.commit()
    if result.rowcount != 1:
        return None
    if probe.cancel_requested:
        return "cancelled"
    send(session, probe.id)
    return "requeued"


# --- what the probes found -----------------------------------------------------------------------------------


def latest(session: Session, job_id: uuid.UUID, name: str) -> Probe | None:
    """The newest succeeded probe of that name."""
    return session.exec(
        select(Probe)
        .where(Probe.job_id == job_id, Probe.name == name, Probe.status == JobStatus.succeeded.value)
        .order_by(Probe.finished_at.desc())
    ).first()


def results(session: Session, job_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The newest result of each probe that succeeded: the analysis reads these like epoch rows."""
    out: dict[str, dict[str, Any]] = {}
    rows = session.exec(
        select(Probe)
        .where(Probe.job_id == job_id, Probe.status == JobStatus.succeeded.value)
        .order_by(Probe.finished_at.desc())
    ).all()
    for row in rows:
        out.setdefault(row.name, row.result or {})
    return out


def encode_cursor(probe_id: uuid.UUID, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{probe_id}|{offset}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[uuid.UUID, int]:
    """ValueError when it is not a cursor this service issued."""
    try:
        ident, offset = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return uuid.UUID(ident), int(offset)
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the caller's error
        raise ValueError("not a cursor this service issued") from exc


def label_issues(session: Session, job: Job, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """A page of the latest label check's suspects, most suspect first. A cursor stays on the check it began
    with, so a newer check never mixes into a listing under way."""
    if cursor is not None:
        probe_id, offset = decode_cursor(cursor)
        probe = get(session, job.id, probe_id)
        if probe is None or probe.status != JobStatus.succeeded.value or probe.name != "label_check":
            raise ValueError("not a cursor this service issued")
    else:
        probe, offset = latest(session, job.id, "label_check"), 0
    if probe is None:
        return {"probe_id": None, "noise_rate": None, "total": 0, "items": [], "next_cursor": None}
    issues = (probe.result or {}).get("issues", [])
    page = [{**issue, "n": offset + i} for i, issue in enumerate(issues[offset : offset + limit])]
    end = offset + len(page)
    return {
        "probe_id": probe.id,
        "noise_rate": (probe.result or {}).get("noise_rate"),
        "total": len(issues),
        "items": page,
        "next_cursor": encode_cursor(probe.id, end) if end < len(issues) else None,
    }


def suspect_image(session: Session, job: Job, n: int, *, data_root: Path) -> Path | None:
    """The file of the latest label check's n-th suspect, only if it is a file under the job's own train_dir."""
    probe = latest(session, job.id, "label_check")
    issues = (probe.result or {}).get("issues", []) if probe is not None else []
    if not 0 <= n < len(issues):
        return None
    try:
        train_dir = resolve_under(data_root, job.spec["dataset"]["train_dir"])
        path = resolve_under(train_dir, issues[n]["file"])
    except (PathEscape, KeyError, TypeError):
        return None
    return path if path.is_file() else None


def suspects(session: Session, job: Job) -> list[str] | None:
    """The latest label check's suspects (paths under train_dir), or None when no label check has finished."""
    probe = latest(session, job.id, "label_check")
    if probe is None:
        return None
    return [issue.file for issue in LabelCheckResult.model_validate(probe.result).issues]


def exclusion_remedy(session: Session, job: Job) -> Remedy | None:
    """`exclude_label_issues` built from the latest label check; None when there is none or it found nothing."""
    found = suspects(session, job)
    if not found:
        return None
    return exclude_label_issues(ResolvedSpec(job.spec), found)
