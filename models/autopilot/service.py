"""Autopilot lineages: start one, advance it when its current job ends, and read it back.

`advance` is idempotent and safe to call from any process at any time: it acts only when the current job is
terminal, and a round's child is created under an idempotency key and recorded under the unique
(autopilot_id, round) constraint, so racing or repeated calls cannot start a round twice."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from analysis import followup
from contract.autopilot import AutopilotSpec
from models.analysis import service as analysis_service
from models.autopilot import outcomes
from models.autopilot.decide import End, Fork, helped, next_step
from models.errors import Conflict, NotFound
from models.lifecycle import record_event, request_cancel
from models.settings import Settings, get_settings
from models.tables import Autopilot, ForkOutcome, Job, JobStatus, utcnow

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
    rows = session.exec(select(ForkOutcome.remedies).where(ForkOutcome.autopilot_id == autopilot_id)).all()
    return {r for remedies in rows for r in remedies}


def diagnosis_for_ranking(session: Session, job: Job, metric: str, settings: Settings):
    return analysis_service.diagnose(
        session=session, job=job, max_cached_epochs=settings.analysis_history_cache_epochs, ranking_metric=metric
    )


def _named(session: Session, last: ForkOutcome, config: AutopilotSpec, settings: Settings) -> list[str]:
    """The remedy ids of the finding behind the last fork: its cause, in the diagnosis of the job it forked."""
    parent = session.get(Job, last.parent_id)
    if parent is None or last.cause is None:
        return []
    found = diagnosis_for_ranking(session, parent, config.metric, settings)
    return next(([r.id for r in f.remedies] for f in found.findings if f.cause == last.cause), [])


def advance(session: Session, autopilot_id: uuid.UUID, *, settings: Settings | None = None) -> Autopilot:
    """Take the lineage one step further if its current job has ended: measure, decide, fork or end."""
    settings = settings or get_settings()
    ap = session.get(Autopilot, autopilot_id)
    if ap is None:
        raise NotFound(f"autopilot {autopilot_id}")
    session.refresh(ap)
    if ap.state != "active":
        return ap
    current = session.get(Job, ap.current_job_id)
    session.refresh(current)
    if current.status == JobStatus.cancelled.value or current.cancel_requested:
        return _end(session, ap, "cancelled", f"job {current.id} was cancelled")
    if not JobStatus(current.status).terminal:
        return ap
    config = AutopilotSpec.model_validate(ap.config)
    last = None
    if ap.rounds_done:
        last = session.exec(
            select(ForkOutcome).where(ForkOutcome.autopilot_id == ap.id, ForkOutcome.round == ap.rounds_done)
        ).first()
        if last is not None:
            last = outcomes.measure(session, last)
    last_helped = helped(forked=last is not None, gain=last.gain if last else None, min_gain=config.min_gain)
    base = current if last_helped or last is None else session.get(Job, last.parent_id)
    if ap.rounds_done >= config.max_rounds:
        return _end(session, ap, "max_rounds", f"{ap.rounds_done} of {config.max_rounds} rounds done")
    found = diagnosis_for_ranking(session, base, config.metric, settings)
    done = tried(session, ap.id)
    follow = None
    if last is not None and last_helped:  # the last child is the base: should its remedy be carried further?
        history = analysis_service.history(session, base, max_cached_epochs=settings.analysis_history_cache_epochs)
        follow = followup.follow_up(
            history,
            analysis_service.context(session, base),
            applied=list(last.remedies),
            named=_named(session, last, config, settings),
            tried=done,
            metric=config.metric,
        )
    step = next_step(
        config,
        rounds_done=ap.rounds_done,
        last_helped=last_helped,
        diagnosis=found,
        tried=done,
        follow_up=follow,
        last_cause=last.cause if last else None,
    )
    if isinstance(step, End):
        return _end(session, ap, step.reason, step.detail)
    return _fork_round(session, ap, base, step, config, settings)


def _fork_round(
    session: Session, ap: Autopilot, base: Job, step: Fork, config: AutopilotSpec, settings: Settings
) -> Autopilot:
    round_no = ap.rounds_done + 1
    child, _ = analysis_service.fork(
        session=session,
        settings=settings,
        job=base,
        patch={},
        # a follow-up is derived from the base's records, not offered by its diagnosis
        apply=[] if step.follow_up else [step.remedy.id],
        resolved=[step.remedy] if step.follow_up else [],
        idempotency_key=f"autopilot:{ap.id}:round:{round_no}",  # a second call gets the same child back
        outcome={"metric": config.metric, "autopilot_id": ap.id, "round_no": round_no, "cause": step.cause},
    )
    result = session.execute(
        update(Autopilot)
        .where(Autopilot.id == ap.id, Autopilot.state == "active", Autopilot.rounds_done == round_no - 1)
        .values(current_job_id=child.id, rounds_done=round_no)
    )
    if result.rowcount == 1:
        record_event(
            session,
            child.id,
            "autopilot",
            reason=f"autopilot round {round_no}: {step.remedy.id}",
            data={
                "autopilot_id": str(ap.id),
                "round": round_no,
                "cause": step.cause,
                "confidence": step.confidence,
                "remedy": step.remedy.id,
                "patch": step.remedy.patch,
                "parent_id": str(base.id),
                "text": step.remedy.text,
                **({"follow_up": step.follow_up} if step.follow_up else {}),
            },
        )
    session.commit()
    if result.rowcount == 1:
        log.info(
            "autopilot forked", autopilot_id=str(ap.id), round=round_no, remedy=step.remedy.id, child_id=str(child.id)
        )
    session.refresh(ap)
    if ap.state != "active" and not JobStatus(session.get(Job, child.id).status).terminal:
        _cancel_quietly(session, child.id)  # the lineage was cancelled while this round was being started
    return ap


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
