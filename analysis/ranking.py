"""Remedies ranked by evidence: each rule's reference order is the prior, measured fork outcomes move it.

For a finding's remedy at position i (0 = the rule's first choice) with n measured outcomes for the same
cause and metric, of mean gain g:

    prior(i) = PRIOR_GAIN / (i + 1)
    score    = (n · g + K · prior(i)) / (n + K)

With no outcomes the score is the prior, so the rule's order stands; each outcome pulls the score toward
what was measured, and after K outcomes the evidence weighs as much as the prior. Pure: no database.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.findings import Diagnosis

PRIOR_GAIN = 0.05  # the gain the rule's first remedy is assumed to bring (accuracy points, or loss reduced)
K = 5  # pseudo-outcomes the prior is worth


@dataclass(frozen=True)
class Evidence:
    n: int
    mean_gain: float


def prior(position: int) -> float:
    return PRIOR_GAIN / (position + 1)


def score(position: int, evidence: Evidence | None) -> float:
    if evidence is None or evidence.n == 0:
        return prior(position)
    return (evidence.n * evidence.mean_gain + K * prior(position)) / (evidence.n + K)


def rerank(diagnosis: Diagnosis, evidence: dict[tuple[str, str], Evidence]) -> Diagnosis:
    """A copy with every finding's remedies ordered by score, best first (ties keep the rule's order).
    `evidence` is keyed by (cause, remedy id)."""
    if not evidence:
        return diagnosis
    findings = []
    for f in diagnosis.findings:
        order = sorted(range(len(f.remedies)), key=lambda i: -score(i, evidence.get((f.cause, f.remedies[i].id))))
        findings.append(f.model_copy(update={"remedies": [f.remedies[i] for i in order]}))
    return diagnosis.model_copy(update={"findings": findings})
