"""Fork outcomes: recorded at fork time, measured from the metrics rows once the child ends, aggregated."""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

import analysis
from analysis.ranking import Evidence
from contract.autopilot import higher_is_better
from models.tables import EpochMetric, ForkOutcome, Job, JobStatus, utcnow


def cause_of(diagnosis: analysis.Diagnosis, remedy_id: str) -> str | None:
    """The cause of the most confident finding offering this remedy (the one a fork applies)."""
    for finding in diagnosis.findings:
        if any(r.id == remedy_id for r in finding.remedies):
            return finding.cause
    return None


def compose(*patches: dict[str, Any]) -> dict[str, Any]:
    """One merge patch with the effect of applying these in order (nulls kept: they delete in the spec)."""
    out: dict[str, Any] = {}
    for patch in patches:
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = compose(out[key], value)
            else:
                out[key] = value
    return out


def record_fork(
    session: Session,
    *,
    parent: Job,
    child: Job,
    remedies: list[str],
    patch: dict[str, Any],
    cause: str | None,
    metric: str = "val_accuracy",
    autopilot_id: uuid.UUID | None = None,
    round_no: int | None = None,
) -> ForkOutcome:
    """One row per child; a second call for the same child (or the same autopilot round) returns the first row."""
    existing = session.exec(select(ForkOutcome).where(ForkOutcome.child_id == child.id)).first()
    if existing is not None:
        return existing
    row = ForkOutcome(
        parent_id=parent.id,
        child_id=child.id,
        owner=parent.owner,
        cause=cause,
        remedies=remedies,
        patch=patch,
        metric=metric,
        autopilot_id=autopilot_id,
        round=round_no,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent caller recorded it first
        session.rollback()
        found = session.exec(select(ForkOutcome).where(ForkOutcome.child_id == child.id)).first()
        if found is None and autopilot_id is not None:
            found = session.exec(
                select(ForkOutcome).where(ForkOutcome.autopilot_id == autopilot_id, ForkOutcome.round == round_no)
            ).first()
        if found is None:
            raise
        return found
    return row


def best(session: Session, job_id: uuid.UUID, metric: str) -> tuple[float | None, int]:
    """The job's best value of `metric` over its epoch rows, and how many epochs it recorded."""
    column = getattr(EpochMetric, metric)
    agg = func.max(column) if higher_is_better(metric) else func.min(column)
    value, epochs = session.exec(select(agg, func.count(EpochMetric.id)).where(EpochMetric.job_id == job_id)).one()
    return (float(value) if value is not None else None), int(epochs)


def same_evaluation_set(parent: Job, child: Job, metric: str) -> bool:
    """Gains are only comparable on the same images: validation metrics need the same validation source."""
    p, c = parent.spec.get("dataset", {}), child.spec.get("dataset", {})
    keys = ("val_dir", "validation_split", "train_dir", "seed") if metric.startswith("val_") else ("train_dir",)
    if metric.startswith("val_") and p.get("val_dir") and p.get("val_dir") == c.get("val_dir"):
        keys = ("val_dir",)  # a fixed validation directory does not depend on the train set
    return all(p.get(k) == c.get(k) for k in keys)


def measure(session: Session, outcome: ForkOutcome) -> ForkOutcome:
    """Fill in the effect once the child has ended; a no-op before that or when already measured."""
    if outcome.measured_at is not None:
        return outcome
    child, parent = session.get(Job, outcome.child_id), session.get(Job, outcome.parent_id)
    if child is None or parent is None or not JobStatus(child.status).terminal:
        return outcome
    outcome.parent_best, outcome.parent_epochs = best(session, parent.id, outcome.metric)
    outcome.child_best, outcome.child_epochs = best(session, child.id, outcome.metric)
    if (
        outcome.parent_best is not None
        and outcome.child_best is not None
        and same_evaluation_set(parent, child, outcome.metric)
    ):
        diff = outcome.child_best - outcome.parent_best
        outcome.gain = round(diff if higher_is_better(outcome.metric) else -diff, 6)
    outcome.measured_at = utcnow()
    session.add(outcome)
    session.commit()
    return outcome


def measure_child(session: Session, child_id: uuid.UUID) -> ForkOutcome | None:
    row = session.exec(select(ForkOutcome).where(ForkOutcome.child_id == child_id)).first()
    return measure(session, row) if row is not None else None


def pending(session: Session) -> list[ForkOutcome]:
    """Unmeasured outcomes whose child has ended."""
    terminal = [s.value for s in JobStatus if s.terminal]
    return list(
        session.exec(
            select(ForkOutcome)
            .join(Job, Job.id == ForkOutcome.child_id)
            .where(ForkOutcome.measured_at.is_(None), Job.status.in_(terminal))
        ).all()
    )


def remedy_key(remedies: list[str]) -> str:
    return "+".join(remedies) if remedies else "patch"


def aggregate(session: Session, owner: str | None, metric: str | None = None) -> list[dict[str, Any]]:
    """Per (cause, remedy, metric): how many forks, how many measured, the share that improved, median gain."""
    query = select(ForkOutcome)
    if owner is not None:
        query = query.where(ForkOutcome.owner == owner)
    if metric is not None:
        query = query.where(ForkOutcome.metric == metric)
    groups: dict[tuple, list[ForkOutcome]] = {}
    for row in session.exec(query.order_by(ForkOutcome.id)).all():
        groups.setdefault((row.cause, remedy_key(row.remedies), row.metric), []).append(row)
    items = []
    for (cause, remedy, m), rows in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2])):
        gains = [r.gain for r in rows if r.gain is not None]
        items.append(
            {
                "cause": cause,
                "remedy": remedy,
                "metric": m,
                "count": len(rows),
                "measured": len(gains),
                "improved_share": round(sum(g > 0 for g in gains) / len(gains), 4) if gains else None,
                "median_gain": round(statistics.median(gains), 6) if gains else None,
                "mean_gain": round(statistics.fmean(gains), 6) if gains else None,
            }
        )
    return items


def evidence(session: Session, owner: str, metric: str = "val_accuracy") -> dict[tuple[str, str], Evidence]:
    """Measured single-remedy outcomes of this tenant, by (cause, remedy id), for the ranking."""
    rows = session.exec(
        select(ForkOutcome.cause, ForkOutcome.remedies, ForkOutcome.gain).where(
            ForkOutcome.owner == owner,
            ForkOutcome.metric == metric,
            ForkOutcome.gain.is_not(None),
            ForkOutcome.cause.is_not(None),
        )
    ).all()
    gains: dict[tuple[str, str], list[float]] = {}
    for cause, remedies, gain in rows:
        if len(remedies) == 1:  # a combined fork's gain cannot be credited to one remedy
            gains.setdefault((cause, remedies[0]), []).append(gain)
    return {k: Evidence(len(v), statistics.fmean(v)) for k, v in gains.items()}
