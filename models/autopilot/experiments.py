"""Experiments before a decision: where the curves only suggest a cause that a probe can measure, the autopilot
runs that probe on the job its next fork would start from and decides once it has ended.

Label noise is the case: the curves can only suspect it (a capped or inverted fit has other explanations), while
a label check (confident learning on out-of-fold probabilities) measures the noise rate and names the suspect
files. A confirmed check raises the finding to `label_noise` and brings a remedy no curve could give: leaving the
suspects out (`exclude_label_issues`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlmodel import Session

from analysis import Diagnosis
from models import probes
from models.tables import Job

# cause the curves suspect → the probe that measures it
CONFIRMED_BY = {"label_noise_suspected": "label_check"}
MIN_SUSPICION = 0.3  # a finding this confident is worth a probe's minutes; below it the rule's own signal is weak
LABEL_CAUSES = ("label_noise", "label_noise_suspected")


@dataclass(frozen=True)
class Experiment:
    """What the next decision waits for: the probes requested now, or those still queued or running."""

    job_id: uuid.UUID
    requested: tuple[str, ...] = ()
    running: tuple[str, ...] = ()


def wanted(diagnosis: Diagnosis) -> list[str]:
    """The probes the diagnosis's suspicions call for, most confident finding first."""
    findings = sorted(diagnosis.findings, key=lambda f: -f.confidence)
    return list(
        dict.fromkeys(
            CONFIRMED_BY[f.cause] for f in findings if f.cause in CONFIRMED_BY and f.confidence >= MIN_SUSPICION
        )
    )


def run_before_deciding(session: Session, *, job: Job, diagnosis: Diagnosis) -> Experiment | None:
    """None when nothing needs measuring first: no suspicion a probe can measure, or its probe already ran on this
    job (whatever its outcome: one try per job, a failed probe does not hold the lineage). Otherwise the probes
    requested now, or those already queued or running: the lineage waits for them (the worker's hook at a probe's
    end, or the sweep, takes it on)."""
    names = wanted(diagnosis)
    if not names:
        return None
    seen: dict[str, list[str]] = {}
    for probe in probes.list_for_job(session, job.id):
        seen.setdefault(probe.name, []).append(probe.status)
    running = tuple(n for n in names if any(s in probes.ACTIVE for s in seen.get(n, [])))
    if running:
        return Experiment(job.id, running=running)
    missing = [n for n in names if n not in seen]
    if not missing:
        return None
    try:
        rows = probes.request(session, job=job, names=missing, budget_seconds=None, trigger="autopilot")
    except probes.ProbeBusy:  # another caller requested them a moment ago
        return Experiment(job.id, running=tuple(missing))
    return Experiment(job.id, requested=tuple(r.name for r in rows))


def with_measured_remedies(session: Session, *, job: Job, diagnosis: Diagnosis) -> tuple[Diagnosis, dict[str, dict]]:
    """The diagnosis with the remedies only a probe can build put first in the findings they answer, and the
    evidence for each: leaving out a finished label check's suspects, for a label-noise finding."""
    remedy = probes.exclusion_remedy(session, job)
    if remedy is None or not any(f.cause in LABEL_CAUSES for f in diagnosis.findings):
        return diagnosis, {}
    check = probes.latest(session, job.id, "label_check")
    findings = [
        f.model_copy(update={"remedies": [remedy, *[r for r in f.remedies if r.id != remedy.id]]})
        if f.cause in LABEL_CAUSES
        else f
        for f in diagnosis.findings
    ]
    result = check.result or {}
    evidence = {
        "label_check": {
            "probe_id": str(check.id),
            "probe_job_id": str(job.id),
            "noise_rate": result.get("noise_rate"),
            "suspects": len(result.get("issues") or []),
            "excluded": len(remedy.patch["dataset"]["exclude"]),
        }
    }
    return diagnosis.model_copy(update={"findings": findings}), {remedy.id: evidence}
