"""Autopilot lineages: start one, advance it when its current job ends, and read it back.

`advance` is idempotent and safe to call from any process at any time. A round is claimed before its child
exists: one transaction, under a row lock, writes the round's intent and bumps the round counter; the child is
then created from that intent under a key derived from the lineage and round. A crash between the two, a retry,
or a racing caller finds the claimed round and finishes it; nobody decides a round twice."""

from __future__ import annotations

import uuid

import structlog
from pydantic import ValidationError
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from analysis import Remedy, apply_patch
from contract.autopilot import AutopilotSpec
from contract.spec import JobSpec
from models.analysis import service as analysis_service
from models.autopilot import experiments, measure, outcomes
from models.autopilot.decide import End, Fork, decide
from models.errors import Conflict, InvalidField, NotFound
from models.jobs.service import check_init_from, check_spec_in_context
from models.lifecycle import record_event, request_cancel
from models.settings import Settings, get_settings
from models.tables import Autopilot, AutopilotRound, ForkOutcome, Job, JobStatus, utcnow

FINAL = ("target_reached", "max_rounds")  # ends no measurement could change

log = structlog.get_logger()


def autopilot_of(session: Session, job_id: uuid.UUID) -> Autopilot | None:
    """The autopilot whose lineage holds this job (as its root or as one of its rounds' children)."""
    found = session.exec(select(Autopilot).where(Autopilot.root_job_id == job_id)).first()
    if found is not None:
        return found
    return session.exec(
        select(Autopilot)
        .join(ForkOutcome, ForkOutcome.autopilot_id == Autopilot.id)
        .where(ForkOutcome.child_id == job_id)
    ).first()


def start(*, session: Session, job: Job, config: AutopilotSpec, settings: Settings | None = None) -> Autopilot:
    """Put a job under autopilot; 409 when it already is, or when it was cancelled."""
    if autopilot_of(session, job.id) is not None:
        raise Conflict(f"job {job.id} is already part of an autopilot lineage")
    if job.status == JobStatus.cancelled.value or job.cancel_requested:
        raise Conflict(f"job {job.id} is cancelled; an autopilot needs a job that ran")
    ap = Autopilot(root_job_id=job.id, owner=job.owner, config=config.model_dump(mode="json"), current_job_id=job.id)
    session.add(ap)
    record_event(
        session, job.id, "autopilot", reason="autopilot started", data={"autopilot_id": str(ap.id), **ap.config}
    )
    try:
        session.commit()
    except IntegrityError:  # the unique root: a concurrent request put it under autopilot first
        session.rollback()
        raise Conflict(f"job {job.id} is already part of an autopilot lineage") from None
    session.refresh(ap)
    if JobStatus(job.status).terminal:
        ap = advance(session, ap.id, settings=settings)
    return ap


def _end(session: Session, ap: Autopilot, reason: str, detail: str) -> Autopilot:
    result = session.execute(
        update(Autopilot)
        .where(Autopilot.id == ap.id, Autopilot.state == "active", Autopilot.rounds_done == ap.rounds_done)
        .values(state="ended", end_reason=reason, end_detail=detail[:2000], ended_at=utcnow())
    )
    if result.rowcount == 1:
        record_event(
            session,
            ap.current_job_id,
            "autopilot",
            reason=f"autopilot ended: {reason}",
            data={"autopilot_id": str(ap.id), "end_reason": reason, "detail": detail[:2000]},
        )
    session.commit()
    if result.rowcount == 1:
        log.info("autopilot ended", autopilot_id=str(ap.id), reason=reason, rounds=ap.rounds_done)
    session.refresh(ap)
    return ap


def tried(session: Session, autopilot_id: uuid.UUID) -> set[str]:
    return {r.remedy for r in measure.rounds(session, autopilot_id)}


def advance(session: Session, autopilot_id: uuid.UUID, *, settings: Settings | None = None) -> Autopilot:
    """Take the lineage one step further if its current job has ended, in one pass down: finish a round already
    claimed (its child may not exist yet), else measure, decide (pure), and act: end, or claim a round and create
    its child."""
    settings = settings or get_settings()
    ap = session.get(Autopilot, autopilot_id)
    if ap is None:
        raise NotFound(f"autopilot {autopilot_id}")
    session.refresh(ap)
    if ap.state != "active":
        return ap
    claimed = _claimed_round(session, ap)
    if claimed is not None:  # a round was claimed and its child not yet marked: adopt it, never decide again
        return _create_child(session, ap, claimed, settings)
    current = session.get(Job, ap.current_job_id)
    session.refresh(current)
    if current.status == JobStatus.cancelled.value or current.cancel_requested:
        return _end(session, ap, "cancelled", f"job {current.id} was cancelled")
    if not JobStatus(current.status).terminal:
        return ap
    config = AutopilotSpec.model_validate(ap.config)
    measured = measure.measure(session, ap, config, settings)
    step = decide(config, measured.facts)
    if not (isinstance(step, End) and step.reason in FINAL):
        # a suspicion a probe can measure is measured before acting on it (or on anything else)
        if experiments.run_before_deciding(session, job=measured.base, diagnosis=measured.facts.base) is not None:
            return ap  # the probe's end (worker hook) or the sweep advances the lineage again
    if isinstance(step, End):
        return _end(session, ap, step.reason, step.detail)
    invalid = _invalid_fork(session, measured.base, step.remedy.patch, settings)
    if invalid is not None:
        return _end(session, ap, "invalid_fork", f"{step.remedy.id}: {invalid}")
    round_row = _claim(session, ap, seen=ap.rounds_done, base=measured.base, step=step)
    session.refresh(ap)
    if round_row is None:  # another caller claimed this round first: finish theirs if they have not
        claimed = _claimed_round(session, ap)
        return _create_child(session, ap, claimed, settings) if claimed is not None else ap
    return _create_child(session, ap, round_row, settings)


def _claimed_round(session: Session, ap: Autopilot) -> AutopilotRound | None:
    """The lineage's last claimed round when its child is not yet the lineage's current job."""
    if not ap.rounds_done or ap.state != "active":
        return None
    row = session.exec(
        select(AutopilotRound).where(AutopilotRound.autopilot_id == ap.id, AutopilotRound.round == ap.rounds_done)
    ).first()
    if row is None or (row.child_id is not None and row.child_id == ap.current_job_id):
        return None
    return row


def _child_spec(base: Job, patch: dict) -> JobSpec:
    return JobSpec.model_validate(apply_patch(dict(base.spec), patch))


def _invalid_fork(session: Session, base: Job, patch: dict, settings: Settings) -> str | None:
    """Why a fork can never be valid (the spec refuses the patch, or a limit of this service does), naming the
    field; None when it is valid. Checked before a round is claimed, so a lineage never retries it forever."""
    try:
        spec = _child_spec(base, patch)
        check_spec_in_context(spec=spec, settings=settings)
        check_init_from(session=session, spec=spec, owner=base.owner, settings=settings)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    except InvalidField as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors)
    return None


def _claim(session: Session, ap: Autopilot, *, seen: int, base: Job, step: Fork) -> AutopilotRound | None:
    """One transaction: lock the lineage's row, check nobody moved it since `seen`, write the round's intent and
    bump the round counter. PostgreSQL locks with SELECT … FOR UPDATE; SQLite (where FOR UPDATE is not emitted)
    serialises on the write lock that the conditional UPDATE … WHERE rounds_done = :seen takes. None when another
    caller claimed the round or ended the lineage first."""
    session.commit()  # end the reads: the claim starts a transaction of its own (SQLite cannot upgrade a stale one)
    locked = session.exec(
        select(Autopilot).where(Autopilot.id == ap.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    if locked.state != "active" or locked.rounds_done != seen:
        session.rollback()
        return None
    result = session.execute(
        update(Autopilot)
        .where(Autopilot.id == ap.id, Autopilot.state == "active", Autopilot.rounds_done == seen)
        .values(rounds_done=seen + 1)
    )
    if result.rowcount != 1:
        session.rollback()
        return None
    row = AutopilotRound(
        autopilot_id=ap.id,
        round=seen + 1,
        parent_id=base.id,
        cause=step.cause,
        confidence=step.confidence,
        remedy=step.remedy.id,
        text=step.remedy.text,
        patch=step.remedy.patch,
        evidence={**({"follow_up": step.follow_up} if step.follow_up else {}), **step.evidence},
        start=step.start,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the round's unique key: a concurrent claimer won
        session.rollback()
        return None
    log.info("autopilot round claimed", autopilot_id=str(ap.id), round=row.round, remedy=row.remedy)
    return row


def _create_child(session: Session, ap: Autopilot, row: AutopilotRound, settings: Settings) -> Autopilot:
    """Create the round's child from its stored intent under a key of the lineage and round (a retry gets the same
    child back), then mark it as the round's child and the lineage's current job."""
    base = session.get(Job, row.parent_id)
    try:
        child, _ = analysis_service.fork(
            session=session,
            settings=settings,
            job=base,
            patch={},
            apply=[],
            resolved=[Remedy(id=row.remedy, text=row.text or row.remedy, patch=row.patch)],
            idempotency_key=f"autopilot:{ap.id}:round:{row.round}",
            outcome={
                "metric": ap.config.get("metric", "val_accuracy"),
                "autopilot_id": ap.id,
                "round_no": row.round,
                "cause": row.cause,
            },
        )
    except InvalidField as exc:  # the stored intent can never make a valid job (e.g. a limit lowered since)
        session.rollback()
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors)
        return _end(session, ap, "invalid_fork", f"round {row.round} ({row.remedy}): {detail}")
    _mark(session, ap, row, child)
    session.refresh(ap)
    if ap.state != "active" and not JobStatus(session.get(Job, child.id).status).terminal:
        _cancel_quietly(session, child.id)  # the lineage was cancelled while this round was being started
    return ap


def _mark(session: Session, ap: Autopilot, row: AutopilotRound, child: Job) -> None:
    """The round's child becomes the lineage's current job; a second caller finds it done and changes nothing."""
    session.execute(
        update(AutopilotRound)
        .where(AutopilotRound.id == row.id, AutopilotRound.child_id.is_(None))
        .values(child_id=child.id)
    )
    result = session.execute(
        update(Autopilot)
        .where(
            Autopilot.id == ap.id,
            Autopilot.state == "active",
            Autopilot.rounds_done == row.round,
            Autopilot.current_job_id != child.id,
        )
        .values(current_job_id=child.id)
    )
    if result.rowcount == 1:
        record_event(
            session,
            child.id,
            "autopilot",
            reason=f"autopilot round {row.round}: {row.remedy}",
            data={
                "autopilot_id": str(ap.id),
                "round": row.round,
                "cause": row.cause,
                "confidence": row.confidence,
                "remedy": row.remedy,
                "patch": row.patch,
                "parent_id": str(row.parent_id),
                "text": row.text,
                "start": row.start,
                **row.evidence,
            },
        )
    session.commit()
    if result.rowcount == 1:
        log.info(
            "autopilot forked", autopilot_id=str(ap.id), round=row.round, remedy=row.remedy, child_id=str(child.id)
        )


def _cancel_quietly(session: Session, job_id: uuid.UUID) -> None:
    try:
        request_cancel(session, session.get(Job, job_id))
    except Exception as exc:  # noqa: BLE001 - it ended meanwhile
        log.info("autopilot child not cancelled", job_id=str(job_id), error=str(exc))


def job_ended(session: Session, job_id: uuid.UUID, *, settings: Settings | None = None) -> None:
    """Called when a job reaches a terminal state: measure the fork that made it, advance its lineage."""
    outcomes.measure_child(session, job_id)
    ap = session.exec(select(Autopilot).where(Autopilot.current_job_id == job_id, Autopilot.state == "active")).first()
    if ap is not None:
        advance(session, ap.id, settings=settings)


def sweep(session: Session, *, settings: Settings | None = None) -> dict[str, int]:
    """Catch up on everything a crash or a missed hook left: unmeasured ended children, stalled lineages."""
    measured = 0
    for row in outcomes.pending(session):
        outcomes.measure(session, row)
        measured += 1
    terminal = [s.value for s in JobStatus if s.terminal]
    stalled = session.exec(
        select(Autopilot.id)
        .join(Job, Job.id == Autopilot.current_job_id)
        .where(Autopilot.state == "active", or_(Job.status.in_(terminal), Job.cancel_requested.is_(True)))
    ).all()
    advanced = 0
    for ap_id in stalled:
        try:
            advance(session, ap_id, settings=settings)
            advanced += 1
        except Exception as exc:  # noqa: BLE001 - one lineage's trouble must not stop the others
            session.rollback()
            log.warning("autopilot advance failed", autopilot_id=str(ap_id), error=f"{type(exc).__name__}: {exc}")
    return {"measured": measured, "advanced": advanced}
