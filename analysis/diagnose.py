"""The entry point: run the rules, rank the findings, and say what state the job is in."""

from __future__ import annotations

from analysis import calibration
from analysis.findings import Abstention, Diagnosis, Finding, Remedy
from analysis.probes import memorization_verdict
from analysis.records import JobContext
from analysis.rules import RULES
from analysis.view import View
from contract.epoch import EpochRecord

INSUFFICIENT = "insufficient data"


def _select(params: dict[str, dict] | None, rules: list[str] | None) -> list[tuple]:
    """Validate rule ids and parameters before running anything, naming whatever is unknown."""
    params = params or {}
    for rule_id in list(params) + list(rules or []):
        if rule_id not in RULES:
            raise ValueError(f"unknown rule {rule_id!r}; known: {', '.join(RULES)}")
    chosen = [r for r in RULES.values() if rules is None or r.id in rules]
    # every override is validated, even for rules not selected, so a typo never passes silently
    resolved = {rule_id: RULES[rule_id].params(overrides) for rule_id, overrides in params.items()}
    return [(r, resolved.get(r.id) or r.params()) for r in chosen]


def diagnose(
    history: list[EpochRecord],
    context: JobContext,
    params: dict[str, dict] | None = None,
    rules: list[str] | None = None,
) -> Diagnosis:
    """Explain why a job stopped improving. `params` overrides rule parameters by rule id; `rules` picks a subset.

    Raises ValueError for an unknown rule id or parameter.
    """
    selected = _select(params, rules)
    view = View(history, context)
    findings: list[Finding] = []
    abstentions: list[Abstention] = []
    judged = 0
    for rule, p in selected:
        result = rule.run(view, p)
        if isinstance(result, Abstention):
            abstentions.append(result)
        else:
            findings.extend(result)
            judged += rule.judges_progress
    findings = [calibration.apply(f) for f in findings]  # evidence scores → probabilities of being right
    findings.sort(key=lambda f: _rank(f, view))  # stable: ties keep registry order
    verdict = _verdict(view.n, findings, abstentions, len(selected), judged)
    primary = findings[0].cause if findings else None
    return Diagnosis(
        verdict=verdict,
        primary_cause=primary,
        findings=findings,
        abstentions=abstentions,
        epochs_analysed=view.n,
        summary=_summary(verdict, view.n, findings, abstentions),
    )


SYMPTOMS = frozenset({"plateau", "not_learning"})  # what is wrong, not why: ranked after any cause
GENERALISATION = frozenset({"overfitting", "label_noise_suspected", "label_noise", "class_imbalance"})


def _rank(f: Finding, view: View) -> tuple:
    """Causes before symptoms; when the memorization probe shows the model could not fit a small subset
    (`analysis.probes.memorization_verdict`), optimisation causes before generalisation ones (a model that cannot
    fit has an optimisation fault first); then by confidence."""
    demoted = f.cause in GENERALISATION and memorization_verdict(view.probes) == "does_not_fit"
    return (f.cause in SYMPTOMS, demoted, -f.confidence)


def _verdict(n: int, findings: list[Finding], abstentions: list[Abstention], ran: int, judged: int) -> str:
    if any(f.diverging for f in findings):
        return "diverging"
    if n < 2 or len(abstentions) == ran:
        return "insufficient_data"
    if findings:
        return "stagnating"
    if not judged:
        return "insufficient_data"
    # "healthy" only when every rule that could judge stagnation had enough epochs to do so
    if any(a.reason.startswith(INSUFFICIENT) for a in abstentions):
        return "insufficient_data"
    return "healthy"


def _summary(verdict: str, n: int, findings: list[Finding], abstentions: list[Abstention]) -> str:
    head = f"{verdict.replace('_', ' ').capitalize()} after {n} epoch{'s' if n != 1 else ''}"
    if findings:
        top = findings[0]
        text = f"{head}: most likely {top.cause.replace('_', ' ')} (confidence {top.confidence:.2f}). {top.summary}"
        others = sorted({f.cause for f in findings[1:]} - {top.cause})
        if others:
            text += f" Also considered: {', '.join(c.replace('_', ' ') for c in others)}."
        if top.remedies:
            text += f" First remedy: {top.remedies[0].text}"
        return text
    if verdict == "insufficient_data":
        reasons = sorted({a.reason for a in abstentions}) or ["no epochs recorded"]
        return f"{head}: not enough to judge ({'; '.join(reasons)})."
    return f"{head}: no rule found a reason for stagnation."


def remedy_by_id(diagnosis: Diagnosis, remedy_id: str) -> Remedy | None:
    """The remedy with this id from the most confident finding that offers it, or None."""
    for finding in diagnosis.findings:
        for remedy in finding.remedies:
            if remedy.id == remedy_id:
                return remedy
    return None
