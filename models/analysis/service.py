"""Diagnose a job from its stored records, and fork it with remedies applied."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, select

import analysis
from analysis.ranking import rerank
from contract.spec import JobSpec
from models import probes
from models.analysis import history_cache
from models.autopilot import outcomes
from models.errors import InvalidField
from models.jobs import service as jobs
from models.lifecycle import record_event
from models.settings import Settings
from models.tables import Job, JobEvent
from models.versioned_cache import VersionedCache

_RECORDS = TypeAdapter(list[analysis.EpochRecord])
# Diagnoses by job and everything else they depend on, at the job's metrics version: pollers re-ask while
# nothing changed.
_diagnoses: VersionedCache[analysis.Diagnosis] = VersionedCache(lambda _: 0)  # counted by entries
DIAGNOSES_KEPT = 256


def history(session: Session, job: Job, *, max_cached_epochs: int = 0) -> list[analysis.EpochRecord]:
    """Every epoch row of the job, in order, validated in one call (10,000 rows are a normal long job); with
    `max_cached_epochs`, kept per process and topped up with the rows added since."""

    def load(after_epoch: int | None) -> list[analysis.EpochRecord]:
        rows, _ = jobs.list_metrics(session=session, job=job, after_epoch=after_epoch, limit=2**31 - 1)
        return _RECORDS.validate_python(rows)

    return history_cache.history(job.id, job.metrics_version, load, max_epochs=max_cached_epochs)


def context(session: Session, job: Job) -> analysis.JobContext:
    cuts = session.exec(select(JobEvent.data).where(JobEvent.job_id == job.id, JobEvent.kind == "lr_reduced")).all()
    counts = job.class_counts or {}
    return analysis.JobContext(
        spec=job.spec,
        class_counts_train=counts.get("train"),
        class_counts_val=counts.get("val"),
        planned_epochs=job.spec.get("epochs"),
        lr_reductions=[d["epoch"] for d in cuts if d and "epoch" in d],
        status=job.status,
        probes=probes.results(session, job.id),  # measured by the worker's probes: inputs like the epoch rows
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


def diagnose(
    *,
    session: Session,
    job: Job,
    params: dict | None = None,
    rules: list[str] | None = None,
    max_cached_epochs: int = 0,
    ranking_metric: str = "val_accuracy",
    explore: bool = False,
) -> analysis.Diagnosis:
    """Remedies come ranked by evidence: the rules' order blended with this tenant's measured fork outcomes
    (exploring: by each remedy's upper confidence bound, analysis.ranking)."""
    return rerank(
        _diagnose(session=session, job=job, params=params, rules=rules, max_cached_epochs=max_cached_epochs),
        outcomes.evidence(session, job.owner, ranking_metric),
        ranking_metric,
        explore,
    )


def _diagnose(
    *, session: Session, job: Job, params: dict | None, rules: list[str] | None, max_cached_epochs: int
) -> analysis.Diagnosis:
    version = job.metrics_version  # read before the rows, as for metrics pages (api/jobs/page_cache.py)
    ctx = context(session, job)
    key = (
        job.id,
        ctx.model_dump_json(),
        json.dumps(params, sort_keys=True, default=str),
        tuple(rules) if rules is not None else None,
    )
    found = _diagnoses.get(key, version, limit=DIAGNOSES_KEPT)
    if found is not None:
        return found
    try:
        found = analysis.diagnose(
            history(session, job, max_cached_epochs=max_cached_epochs), ctx, params=params, rules=rules
        )
    except ValueError as exc:
        raise InvalidField([{"loc": ["query"], "msg": str(exc), "type": "value_error"}]) from exc
    _diagnoses.put(key, version, found, limit=DIAGNOSES_KEPT)
    return found


def clear_cache() -> None:
    """Forget cached diagnoses and histories (benchmarks measure the first request with this)."""
    _diagnoses.clear()
    history_cache.clear()


def fork(
    *,
    session: Session,
    settings: Settings,
    job: Job,
    apply: list[str],
    patch: dict[str, Any],
    idempotency_key: str | None = None,
    outcome: dict[str, Any] | None = None,
    resolved: list[analysis.Remedy] = (),
) -> tuple[Job, list[str]]:
    """A new queued job whose spec is the parent's with the chosen remedies' patches, then `patch`, merged in.

    `apply` names remedies of the parent's diagnosis; `resolved` are remedies the caller already derived from the
    parent's records (the autopilot's follow-ups). Every fork gets a fork-outcome row (`outcome` adds the
    autopilot's metric, id, round and cause), measured when the child ends."""
    spec = dict(job.spec)
    apply, resolved = _resolve_probe_remedies(session, job, apply, list(resolved))
    applied = [r.id for r in resolved]
    remedy_patches = [r.patch for r in resolved]
    for remedy in resolved:
        spec = analysis.apply_patch(spec, remedy.patch)
    found = None
    if apply:
        found = diagnose(session=session, job=job, max_cached_epochs=settings.analysis_history_cache_epochs)
        available = sorted({r.id for f in found.findings for r in f.remedies})
        for i, remedy_id in enumerate(apply):
            remedy = analysis.remedy_by_id(found, remedy_id)
            if remedy is None:
                raise InvalidField(
                    [
                        {
                            "loc": ["body", "apply", i],
                            "msg": f"{remedy_id!r} is not a remedy of this job's diagnosis; available: {available}",
                            "type": "value_error",
                        }
                    ]
                )
            spec = analysis.apply_patch(spec, remedy.patch)
            applied.append(remedy_id)
            remedy_patches.append(remedy.patch)
    spec = analysis.apply_patch(spec, patch)
    try:
        new_spec = JobSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidField(
            [{"loc": ["body", "spec", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from exc
    child, created = jobs.create_job(
        session=session,
        spec=new_spec,
        settings=settings,
        owner=job.owner,
        parent_id=job.id,
        idempotency_key=idempotency_key,
    )
    if created:
        record_event(
            session,
            job.id,
            "forked",
            reason=f"forked as {child.id}",
            data={"child_id": str(child.id), "applied": applied, "patch": patch},
        )
        session.commit()
    extra = dict(outcome or {})
    cause = extra.pop("cause", None) or (outcomes.cause_of(found, apply[0]) if found and apply else None)
    outcomes.record_fork(
        session,
        parent=job,
        child=child,
        remedies=applied,
        patch=outcomes.compose(*remedy_patches, patch),
        cause=cause,
        **extra,
    )
    return child, applied


EXCLUDE_LABEL_ISSUES = "exclude_label_issues"  # built from the latest label check (models.probes), not a rule


def _resolve_probe_remedies(
    session: Session, job: Job, apply: list[str], resolved: list[analysis.Remedy]
) -> tuple[list[str], list[analysis.Remedy]]:
    """Remedies built from the job's probe results rather than its diagnosis: `exclude_label_issues` reads the
    latest label check's suspects."""
    if EXCLUDE_LABEL_ISSUES not in apply:
        return apply, resolved
    remedy = probes.exclusion_remedy(session, job)
    if remedy is None:
        raise InvalidField(
            [
                {
                    "loc": ["body", "apply", apply.index(EXCLUDE_LABEL_ISSUES)],
                    "msg": f"{EXCLUDE_LABEL_ISSUES!r} needs a finished label check with suspects "
                    '(POST /jobs/{id}/probes with probes ["label_check"])',
                    "type": "value_error",
                }
            ]
        )
    return [a for a in apply if a != EXCLUDE_LABEL_ISSUES], [*resolved, remedy]


def pre_training_findings(*, session: Session, job: Job) -> list[dict]:
    """The findings of the checks that ran before the first epoch (the data set, the model), in order."""
    rows = session.exec(
        select(JobEvent.data)
        .where(JobEvent.job_id == job.id, JobEvent.kind == "finding", JobEvent.reason.like("before training%"))
        .order_by(JobEvent.id)
    ).all()
    return [d for d in rows if d]
