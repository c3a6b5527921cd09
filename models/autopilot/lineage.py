"""The chain of a lineage, from its root, with each step's diagnosis and the measured effect of its fork."""

from __future__ import annotations

from sqlmodel import Session, select

from contract.autopilot import (
    AutopilotRead,
    DiagnosisSummary,
    LineageRead,
    LineageStep,
    ProbeWait,
    higher_is_better,
)
from models import probes
from models.analysis import service as analysis_service
from models.autopilot import measure, outcomes
from models.autopilot.service import autopilot_of
from models.jobs import service as jobs
from models.settings import Settings
from models.tables import Autopilot, AutopilotRound, ForkOutcome, Job, Probe


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
    session: Session,
    job: Job,
    settings: Settings,
    metric: str,
    round_no: int | None,
    fork: ForkOutcome | None,
    intent: AutopilotRound | None = None,
) -> LineageStep:
    best, epochs = outcomes.best(session, job.id, metric)
    parent = session.get(Job, job.parent_id) if job.parent_id else None
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
        comparison=fork.comparison if fork else None,
        parent_patch_values=_previous_values(parent.spec if parent else {}, fork.patch if fork else {}),
        start=intent.start if intent else None,
        epochs_saved=((intent.evidence or {}).get("warm_start") or {}).get("epochs_saved", 0) if intent else 0,
        evidence=intent.evidence if intent else {},
    )


def _previous_values(spec: dict, patch: dict) -> dict:
    """The parent's value of every field the patch sets, in the patch's shape (to show "1e-05 → 0.0001")."""
    out = {}
    for key, value in patch.items():
        if isinstance(value, dict):
            out[key] = _previous_values(spec.get(key) or {} if isinstance(spec.get(key), dict) else {}, value)
        else:
            out[key] = spec.get(key)
    return out


def best_step(steps: list[LineageStep], metric: str) -> LineageStep | None:
    """The job to keep: the best value of the lineage's metric among jobs that succeeded (the earliest on a tie,
    as it cost fewer rounds)."""
    done = [s for s in steps if s.status == "succeeded" and s.best is not None]
    if not done:
        return None
    sign = 1 if higher_is_better(metric) else -1
    return max(done, key=lambda s: (sign * s.best, -steps.index(s)))


def _waiting_on(session: Session, ap: Autopilot | None, steps: list[LineageStep]) -> list[ProbeWait]:
    """The autopilot's own probes still queued or running on the lineage's jobs: what its next decision waits on."""
    if ap is None or ap.state != "active":
        return []
    rows = session.exec(
        select(Probe)
        .where(
            Probe.job_id.in_([s.job_id for s in steps]), Probe.trigger == "autopilot", Probe.status.in_(probes.ACTIVE)
        )
        .order_by(Probe.created_at)
    ).all()
    return [ProbeWait(probe=r.name, probe_id=r.id, job_id=r.job_id, status=r.status) for r in rows]


def _read(
    session: Session, job: Job, root: Job, metric: str, ap: Autopilot | None, steps: list[LineageStep]
) -> LineageRead:
    keep = best_step(steps, metric)
    return LineageRead(
        job_id=job.id,
        root_id=root.id,
        metric=metric,
        autopilot=AutopilotRead.model_validate(ap) if ap is not None else None,
        steps=steps,
        best_job_id=keep.job_id if keep else None,
        best=keep.best if keep else None,
        epochs_saved=sum(s.epochs_saved for s in steps),
        waiting_on=_waiting_on(session, ap, steps),
    )


def lineage(*, session: Session, job: Job, settings: Settings) -> LineageRead:
    """An autopilot's lineage is its root and its rounds in order; otherwise the fork chain from the root to `job`."""
    ap = autopilot_of(session, job.id)
    if ap is not None:
        metric = ap.config.get("metric", "val_accuracy")
        root = session.get(Job, ap.root_job_id)
        steps = [_step(session, root, settings, metric, 0, None)]
        for intent in measure.rounds(session, ap.id):
            fork = measure.outcome_of(session, intent.child_id)
            if fork is None:  # claimed, child not created yet
                continue
            fork = outcomes.measure(session, fork)
            steps.append(
                _step(session, session.get(Job, intent.child_id), settings, metric, intent.round, fork, intent)
            )
        return _read(session, job, root, metric, ap, steps)
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
    return _read(session, job, chain[0], metric, None, steps)
