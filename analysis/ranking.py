"""Remedies ranked by evidence: each rule's reference order is the prior, measured fork outcomes move it, and an
autopilot explores.

Per (cause, remedy, metric), the gain of a remedy is modelled as normal with an unknown mean. The prior mean of
the remedy at position i of its rule's list (0 = the rule's first choice) is `gain / (i + 1)` with a spread
`sd`, both per metric (accuracy points, or loss reduced). n measured first applications of mean ḡ and sample
variance s² update it (normal–normal conjugate):

    σ²         = ((n − 1)·s² + K0·noise_sd²) / (n − 1 + K0)       the outcomes' variance, shrunk to the prior's
    precision  = 1/sd² + n/σ²
    mean       = (prior/sd² + n·ḡ/σ²) / precision

A remedy whose outcomes scatter widely (large σ²) moves its score less than one whose outcomes agree. The
diagnosis endpoint orders by the posterior mean; the autopilot explores by an upper confidence bound, mean +
EXPLORE·sd (Bayes-UCB): with no evidence every remedy has the same spread and the rule's order stands; once the
rule's first choice has been measured a few times without gaining, its spread narrows and a remedy never tried,
whose spread is still the prior's, gets its chance. Deterministic, so a retried decision decides the same.
Pure: no database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.findings import Diagnosis


@dataclass(frozen=True)
class Prior:
    gain: float  # the rule's first remedy's assumed gain
    sd: float  # how sure the prior is of it
    noise_sd: float  # the spread of one fork's measured gain around the remedy's mean, before any is measured


ACCURACY_PRIOR = Prior(gain=0.05, sd=0.045, noise_sd=0.1)
LOSS_PRIOR = Prior(gain=0.05, sd=0.06, noise_sd=0.15)  # losses move in larger, noisier steps than accuracies
PRIORS = {"val_accuracy": ACCURACY_PRIOR, "accuracy": ACCURACY_PRIOR, "val_loss": LOSS_PRIOR, "loss": LOSS_PRIOR}
K0 = 2  # pseudo-outcomes behind the prior's variance when the outcomes' own is estimated
EXPLORE = 1.0  # standard deviations of optimism the autopilot adds (about the 84th percentile)
# Kept for readers of GET /remedies/outcomes: the prior's weight in outcomes, noise_sd² / sd² (about 5).
PRIOR_GAIN = ACCURACY_PRIOR.gain
K = round(ACCURACY_PRIOR.noise_sd**2 / ACCURACY_PRIOR.sd**2)


@dataclass(frozen=True)
class Evidence:
    n: int
    mean_gain: float
    variance: float | None = None  # sample variance of the gains (n ≥ 2)


def prior(position: int, metric: str = "val_accuracy") -> float:
    return PRIORS.get(metric, ACCURACY_PRIOR).gain / (position + 1)


def posterior(position: int, evidence: Evidence | None, metric: str = "val_accuracy") -> tuple[float, float]:
    """(mean, standard deviation) of the remedy's gain after its measured first applications."""
    p = PRIORS.get(metric, ACCURACY_PRIOR)
    mu0, tau2 = prior(position, metric), p.sd**2
    if evidence is None or evidence.n == 0:
        return mu0, p.sd
    n = evidence.n
    s2 = evidence.variance if evidence.variance is not None and n >= 2 else p.noise_sd**2
    sigma2 = max(((n - 1) * s2 + K0 * p.noise_sd**2) / (n - 1 + K0), 1e-8)
    precision = 1 / tau2 + n / sigma2
    return (mu0 / tau2 + n * evidence.mean_gain / sigma2) / precision, math.sqrt(1 / precision)


def score(position: int, evidence: Evidence | None, metric: str = "val_accuracy", explore: bool = False) -> float:
    """The posterior mean; exploring, its upper confidence bound."""
    mean, sd = posterior(position, evidence, metric)
    return mean + EXPLORE * sd if explore else mean


def rerank(
    diagnosis: Diagnosis,
    evidence: dict[tuple[str, str], Evidence],
    metric: str = "val_accuracy",
    explore: bool = False,
) -> Diagnosis:
    """A copy with every finding's remedies ordered by score, best first (ties keep the rule's order).
    `evidence` is keyed by (cause, remedy id). Without evidence the rule's order stands."""
    if not evidence:
        return diagnosis
    findings = []
    for f in diagnosis.findings:
        scores = [score(i, evidence.get((f.cause, r.id)), metric, explore) for i, r in enumerate(f.remedies)]
        order = sorted(range(len(f.remedies)), key=lambda i: -scores[i])
        findings.append(f.model_copy(update={"remedies": [f.remedies[i] for i in order]}))
    return diagnosis.model_copy(update={"findings": findings})
