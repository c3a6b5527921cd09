"""The chain of a lineage, from its root, with each step's diagnosis and the measured effect of its fork."""

from __future__ import annotations

from sqlmodel import Session, select

from contract.autopilot import AutopilotRead, DiagnosisSummary, LineageRead, LineageStep
from models.analysis import service as analysis_service
from models.autopilot import outcomes
from models.autopilot.service import autopilot_of
from models.jobs import service as jobs
from models.settings import Settings
from models.tables import ForkOutcome, Job


def _summary(session: Session, job: Job, settings: Settings, metric: str) -> DiagnosisSummary:
    found = analysis_service.diagnose(
        session=session, job=job, max_cached_epochs=settings.analysis_history_cache_epochs, ranking_metric=metric
    )
    top = found.findings[0] if found.findings else None
    return DiagnosisSummary(
        verdict=found.verdict,
        primary_cause=found.primary_cause,
        confidence=top.confidence if top else None,
        summary=found.summary,
    )


def _step(
    session: Session, job: Job, settings: Settings, metric: str, round_no: int | None, fork: ForkOutcome | None
) -> LineageStep:
    best, epochs = outcomes.best(session, job.id, metric)
    return LineageStep(
        round=round_no,
        job_id=job.id,
        parent_id=job.parent_id,
        name=job.name,
        status=job.status,
        epochs=epochs,
        best=best,
        diagnosis=_summary(session, job, settings, metric),
        cause=fork.cause if fork else None,
        remedies=fork.remedies if fork else [],
        patch=fork.patch if fork else {},
        parent_best=fork.parent_best if fork else None,
        gain=fork.gain if fork else None,
    )


def lineage(*, session: Session, job: Job, settings: Settings) -> LineageRead:
    """An autopilot's lineage is its root and its rounds in order; otherwise the fork chain from the root to `job`."""
    ap = autopilot_of(session, job.id)
    if ap is not None:
        metric = ap.config.get("metric", "val_accuracy")
        rounds = session.exec(
            select(ForkOutcome).where(ForkOutcome.autopilot_id == ap.id).order_by(ForkOutcome.round)
        ).all()
        for row in rounds:
            outcomes.measure(session, row)
        root = session.get(Job, ap.root_job_id)
        steps = [_step(session, root, settings, metric, 0, None)]
        steps += [_step(session, session.get(Job, r.child_id), settings, metric, r.round, r) for r in rounds]
        return LineageRead(
            job_id=job.id, root_id=root.id, metric=metric, autopilot=AutopilotRead.model_validate(ap), steps=steps
        )
    chain = [session.get(Job, i) for i in reversed(jobs.ancestors(session=session, job=job))] + [job]
    chain = [j for j in chain if j is not None]
    forks = {
        r.child_id: r
        for r in session.exec(select(ForkOutcome).where(ForkOutcome.child_id.in_([j.id for j in chain]))).all()
    }
    metric = next((f.metric for f in forks.values()), "val_accuracy")
    steps = []
    for i, j in enumerate(chain):
        fork = forks.get(j.id)
        if fork is not None:
            fork = outcomes.measure(session, fork)
        steps.append(_step(session, j, settings, metric, 0 if i == 0 else None, fork))
    return LineageRead(job_id=job.id, root_id=chain[0].id, metric=metric, autopilot=None, steps=steps)
