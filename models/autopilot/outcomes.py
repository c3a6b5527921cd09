"""Fork outcomes: recorded at fork time, measured from the metrics rows once the child ends, aggregated."""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

import analysis
from analysis import significance
from analysis.ranking import Evidence
from contract import predictions
from contract.autopilot import higher_is_better
from models.tables import (
    Autopilot,
    AutopilotRound,
    EpochMetric,
    ForkOutcome,
    Job,
    JobStatus,
    ValPredictions,
    utcnow,
)

DEFAULT_MIN_GAIN = 0.01


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


def best(
    session: Session, job_id: uuid.UUID, metric: str, *, within_epochs: int | None = None
) -> tuple[float | None, int]:
    """The job's best value of `metric` over its epoch rows (the first `within_epochs` only, when given), and how
    many epochs it recorded."""
    column = getattr(EpochMetric, metric)
    agg = func.max(column) if higher_is_better(metric) else func.min(column)
    query = select(agg, func.count(EpochMetric.id)).where(EpochMetric.job_id == job_id)
    if within_epochs is not None:
        query = query.where(EpochMetric.epoch <= within_epochs)
    value, epochs = session.exec(query).one()
    return (float(value) if value is not None else None), int(epochs)


def validation_size(job: Job) -> int | None:
    counts = (job.class_counts or {}).get("val")
    return sum(counts.values()) if counts else None


def val_predictions(session: Session, job_id: uuid.UUID) -> dict | None:
    """The job's best epoch's stored validation predictions (contract.predictions), if the worker wrote them."""
    row = session.get(ValPredictions, job_id)
    return row.stored if row is not None else None


def compare(
    parent: Job,
    child: Job,
    outcome: ForkOutcome,
    *,
    min_gain: float,
    budget_best: float | None,
    parent_predictions: dict | None = None,
    child_predictions: dict | None = None,
) -> dict[str, Any]:
    """Whether the child beat its parent beyond noise: image by image (exact McNemar) when both stored their
    best epoch's predictions on the same images, else Wilson/Newcombe from the validation size, else `min_gain`.
    A significant difference smaller than `min_gain` is not a gain worth a round."""
    gain = outcome.gain
    result = None
    if parent_predictions and child_predictions and outcome.metric == "val_accuracy":
        p_correct, p_labels = predictions.correct(parent_predictions)
        c_correct, c_labels = predictions.correct(child_predictions)
        if p_labels == c_labels:
            result = significance.mcnemar(p_correct, c_correct)
    if result is None and outcome.metric in ("val_accuracy", "accuracy"):
        n_parent, n_child = validation_size(parent), validation_size(child)
        if outcome.metric == "val_accuracy" and n_parent and n_child:
            result = significance.newcombe(outcome.parent_best, outcome.child_best, n_parent, n_child)
    if result is None:
        result = significance.by_min_gain(gain, min_gain)
    direction = result.direction
    if direction == "better" and gain < min_gain:
        direction = "unclear"
    budget_gain = None
    if budget_best is not None and outcome.parent_best is not None:
        diff = budget_best - outcome.parent_best
        budget_gain = round(diff if higher_is_better(outcome.metric) else -diff, 6)
    return {
        "direction": direction,
        "test": result.test,
        **result.evidence,
        "gain_at_parent_budget": budget_gain,
        "parent_budget_epochs": outcome.parent_epochs,
    }


def same_evaluation_set(parent: Job, child: Job, metric: str) -> bool:
    """Gains are only comparable on the same images: validation metrics need the same validation source."""
    p, c = parent.spec.get("dataset", {}), child.spec.get("dataset", {})
    keys = ("val_dir", "validation_split", "train_dir", "seed") if metric.startswith("val_") else ("train_dir",)
    if metric.startswith("val_") and p.get("val_dir") and p.get("val_dir") == c.get("val_dir"):
        keys = ("val_dir",)  # a fixed validation directory does not depend on the train set
    return all(p.get(k) == c.get(k) for k in keys)


def measure(session: Session, outcome: ForkOutcome, *, min_gain: float | None = None) -> ForkOutcome:
    """Fill in the effect once the child has ended; a no-op before that or when already measured. `min_gain` is
    the autopilot's when the fork is one of its rounds (read from the lineage when not given), else 0.01."""
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
        if min_gain is None:
            ap = session.get(Autopilot, outcome.autopilot_id) if outcome.autopilot_id else None
            min_gain = float(ap.config.get("min_gain", DEFAULT_MIN_GAIN)) if ap else DEFAULT_MIN_GAIN
        budget_best, _ = best(session, child.id, outcome.metric, within_epochs=outcome.parent_epochs)
        outcome.comparison = compare(
            parent,
            child,
            outcome,
            min_gain=min_gain,
            budget_best=budget_best,
            parent_predictions=val_predictions(session, parent.id),
            child_predictions=val_predictions(session, child.id),
        )
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
    """Measured first applications of one remedy, of this tenant, by (cause, remedy id), for the ranking: a
    follow-up (the same remedy carried further) and a lineage's later rounds of a remedy it already applied
    measure something else, and a combined fork's gain cannot be credited to one remedy."""
    rows = session.exec(
        select(ForkOutcome.cause, ForkOutcome.remedies, ForkOutcome.gain, ForkOutcome.autopilot_id, AutopilotRound)
        .outerjoin(
            AutopilotRound,
            (AutopilotRound.autopilot_id == ForkOutcome.autopilot_id) & (AutopilotRound.round == ForkOutcome.round),
        )
        .where(
            ForkOutcome.owner == owner,
            ForkOutcome.metric == metric,
            ForkOutcome.gain.is_not(None),
            ForkOutcome.cause.is_not(None),
        )
        .order_by(ForkOutcome.round)
    ).all()
    gains: dict[tuple[str, str], list[float]] = {}
    seen: set[tuple] = set()
    for cause, remedies, gain, autopilot_id, intent in rows:
        if len(remedies) != 1 or (intent is not None and "follow_up" in (intent.evidence or {})):
            continue
        if autopilot_id is not None:
            if (autopilot_id, remedies[0]) in seen:
                continue
            seen.add((autopilot_id, remedies[0]))
        gains.setdefault((cause, remedies[0]), []).append(gain)
    return {
        k: Evidence(len(v), statistics.fmean(v), statistics.variance(v) if len(v) >= 2 else None)
        for k, v in gains.items()
    }
