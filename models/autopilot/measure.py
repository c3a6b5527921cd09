"""Measure: everything the autopilot's decision needs about a lineage, loaded from the database in one pass.

Nothing here decides or writes a decision (models.autopilot.decide decides; models.autopilot.service acts); the
only write is the last round's measured outcome, which is a fact about a job that has ended."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import Session, select

from analysis import Diagnosis, followup
from analysis.probes import suggested_rate
from contract.autopilot import AutopilotSpec
from models import probes
from models.analysis import service as analysis_service
from models.autopilot import experiments, outcomes
from models.autopilot.decide import Facts, LastRound, go_on_from_child
from models.checkpoints import checkpoint_file
from models.settings import Settings
from models.tables import Autopilot, AutopilotRound, ForkOutcome, Job


@dataclass(frozen=True)
class Measured:
    facts: Facts
    current: Job
    base: Job


def rounds(session: Session, autopilot_id: uuid.UUID) -> list[AutopilotRound]:
    return list(
        session.exec(
            select(AutopilotRound).where(AutopilotRound.autopilot_id == autopilot_id).order_by(AutopilotRound.round)
        ).all()
    )


def outcome_of(session: Session, child_id: uuid.UUID | None) -> ForkOutcome | None:
    if child_id is None:
        return None
    return session.exec(select(ForkOutcome).where(ForkOutcome.child_id == child_id)).first()


def diagnosis(session: Session, job: Job, metric: str, settings: Settings, explore: bool = False) -> Diagnosis:
    return analysis_service.diagnose(
        session=session,
        job=job,
        max_cached_epochs=settings.analysis_history_cache_epochs,
        ranking_metric=metric,
        explore=explore,
    )


def measured_learning_rate(session: Session, job_id: uuid.UUID) -> tuple[float, dict] | None:
    """The newest succeeded learning-rate range test of this job (`models.probes`): its suggested rate and which
    probe measured it. None when no range test ran or it read no rate."""
    probe = probes.latest(session, job_id, "lr_range")
    if probe is None:
        return None
    rate = suggested_rate({"lr_range": probe.result or {}})  # the rules' reading: no usable range, no rate
    if rate is None:
        return None
    return rate, {"probe": "lr_range", "probe_job_id": str(job_id), "probe_id": str(probe.id)}


def measured_round(
    session: Session, row: AutopilotRound, outcome: ForkOutcome | None, config: AutopilotSpec
) -> LastRound:
    """A round with its outcome, measured now if its child just ended: the direction and the point gain."""
    if outcome is not None:
        outcome = outcomes.measure(session, outcome, min_gain=config.min_gain)
    direction = (outcome.comparison or {}).get("direction") if outcome else None
    gain = outcome.gain if outcome is not None and direction is not None else None
    return LastRound(cause=row.cause, remedies=(row.remedy,), direction=direction, gain=gain)


def measure(session: Session, ap: Autopilot, config: AutopilotSpec, settings: Settings) -> Measured:
    """The current job's diagnosis and bests, the last two rounds' outcomes (measured now if a child just ended),
    the job the next fork would start from (`go_on_from_child`) and its diagnosis, the remedies tried and those
    that made things worse, the follow-up the records support, and a measured learning rate."""
    current = session.get(Job, ap.current_job_id)
    done = rounds(session, ap.id)
    last_round = done[-1] if done and done[-1].round == ap.rounds_done else None
    outs = [outcome_of(session, r.child_id) for r in done]  # each round's outcome, read once
    last = measured_round(session, last_round, outs[-1], config) if last_round is not None else None
    previous = (
        measured_round(session, done[-2], outs[-2], config) if last_round is not None and len(done) >= 2 else None
    )
    base = current if go_on_from_child(last) else session.get(Job, last_round.parent_id)
    current_diagnosis = diagnosis(session, current, config.metric, settings)
    base_diagnosis = diagnosis(session, base, config.metric, settings, explore=True)  # the remedy to try next
    base_diagnosis, remedy_evidence = experiments.with_measured_remedies(session, job=base, diagnosis=base_diagnosis)
    tried = frozenset(r.remedy for r in done)
    worse = frozenset(
        r.remedy
        for r, o in zip(done, outs, strict=True)
        if o is not None and (o.comparison or {}).get("direction") == "worse"
    )
    follow = None
    if last_round is not None and go_on_from_child(last):  # the last child is the base: should its remedy go further?
        history = analysis_service.history(session, base, max_cached_epochs=settings.analysis_history_cache_epochs)
        parent = session.get(Job, last_round.parent_id)
        named = next(
            (
                [r.id for r in f.remedies]
                for f in diagnosis(session, parent, config.metric, settings).findings
                if f.cause == last_round.cause
            ),
            [],
        )
        follow = followup.follow_up(
            history,
            analysis_service.context(session, base),
            applied=[last_round.remedy],
            named=named,
            tried=set(tried | worse),
            metric=config.metric,
        )
    bests = {m: outcomes.best(session, current.id, m)[0] for m in (config.target or {})}
    measured_lr = measured_learning_rate(session, base.id)
    if measured_lr is None and base.id != ap.root_job_id:
        measured_lr = measured_learning_rate(session, ap.root_job_id)
    checkpoints = frozenset(
        c
        for c in ("best", "last")
        if (c == "best" or base.status == "succeeded") and checkpoint_file(settings.artifacts_dir, base.id, c).is_file()
    )
    facts = Facts(
        rounds_done=ap.rounds_done,
        current=current_diagnosis,
        base=base_diagnosis,
        last=last,
        previous=previous,
        tried=tried,
        worse=worse,
        follow_up=follow,
        current_bests=bests,
        learning_rate=(base.spec.get("optimizer") or {}).get("learning_rate"),
        measured_lr=measured_lr,
        base_job_id=str(base.id),
        base_checkpoints=checkpoints,
        base_epochs=outcomes.best(session, base.id, config.metric)[1],
        base_best_epoch=(outcomes.val_predictions(session, base.id) or {}).get("epoch"),
        base_warm=bool((base.spec.get("model") or {}).get("init_from")),
        imagenet_available=settings.imagenet_loadable,
        remedy_evidence=remedy_evidence,
    )
    return Measured(facts=facts, current=current, base=base)
