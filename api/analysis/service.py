"""Diagnose a job from its stored records, and fork it with remedies applied."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, select

import analysis
from api.errors import InvalidField
from api.jobs import service as jobs
from models.lifecycle import record_event
from models.settings import Settings
from models.spec import JobSpec
from models.tables import EpochMetric, Job, JobEvent


def history(session: Session, job: Job) -> list[analysis.EpochRecord]:
    rows = session.exec(select(EpochMetric).where(EpochMetric.job_id == job.id).order_by(EpochMetric.epoch)).all()
    return [analysis.EpochRecord.model_validate(r.model_dump()) for r in rows]


def context(session: Session, job: Job) -> analysis.JobContext:
    cuts = session.exec(select(JobEvent.data).where(JobEvent.job_id == job.id, JobEvent.kind == "lr_reduced")).all()
    counts = job.class_counts or {}
    return analysis.JobContext(
        spec=job.spec, class_counts_train=counts.get("train"), class_counts_val=counts.get("val"),
        planned_epochs=job.spec.get("epochs"), lr_reductions=[d["epoch"] for d in cuts if d and "epoch" in d],
        status=job.status,
    )


def parse_overrides(query: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`overfitting.ratio_threshold=0.2` → {"overfitting": {"ratio_threshold": 0.2}}."""
    params: dict[str, dict[str, Any]] = {}
    for key, raw in query.items():
        if "." not in key:
            continue
        rule, name = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(rule, {})[name] = value
    return params


def diagnose(*, session: Session, job: Job, params: dict | None = None, rules: list[str] | None = None
             ) -> analysis.Diagnosis:
    try:
        return analysis.diagnose(history(session, job), context(session, job), params=params, rules=rules)
    except ValueError as exc:
        raise InvalidField([{"loc": ["query"], "msg": str(exc), "type": "value_error"}]) from exc


def fork(*, session: Session, settings: Settings, job: Job, apply: list[str], patch: dict[str, Any]
         ) -> tuple[Job, list[str]]:
    """A new queued job whose spec is the parent's with the chosen remedies' patches, then `patch`, merged in."""
    spec = dict(job.spec)
    applied = []
    if apply:
        found = diagnose(session=session, job=job)
        available = sorted({r.id for f in found.findings for r in f.remedies})
        for i, remedy_id in enumerate(apply):
            remedy = analysis.remedy_by_id(found, remedy_id)
            if remedy is None:
                raise InvalidField([{"loc": ["body", "apply", i],
                                     "msg": f"{remedy_id!r} is not a remedy of this job's diagnosis; "
                                            f"available: {available}", "type": "value_error"}])
            spec = analysis.apply_patch(spec, remedy.patch)
            applied.append(remedy_id)
    spec = analysis.apply_patch(spec, patch)
    try:
        new_spec = JobSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidField([{"loc": ["body", "spec", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                            for e in exc.errors()]) from exc
    child, _ = jobs.create_job(session=session, spec=new_spec, settings=settings, owner=job.owner, parent_id=job.id)
    record_event(session, job.id, "forked", reason=f"forked as {child.id}",
                 data={"child_id": str(child.id), "applied": applied, "patch": patch})
    session.commit()
    return child, applied
