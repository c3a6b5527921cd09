"""Confidences that mean what they say: each rule's evidence score mapped to a probability of being right.

A rule's own confidence is an evidence score; `apply` maps it through a logistic (Platt) curve fitted on the
development corpus, p = 1 / (1 + exp(−(a · logit(score) + b))), one (a, b) per cause, shrunk towards a pooled fit
where a cause has few findings. The parameters live in params.json, written by `python -m analysis.calibration.fit`
(never from the held-out families). Symptoms (plateau, not_learning) describe, they do not explain: their scores
are kept as they are.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from analysis.findings import Finding

PARAMS_FILE = Path(__file__).with_name("params.json")
SYMPTOMS = frozenset({"plateau", "not_learning"})
LO, HI = 0.01, 0.99


def logit(x: float) -> float:
    x = min(HI, max(LO, x))
    return math.log(x / (1 - x))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z > -700 else 0.0


def load(path: Path = PARAMS_FILE) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


PARAMS: dict = load()  # {"pooled": [a, b], "causes": {cause: [a, b]}}; empty: raw scores are reported


def probability(cause: str, score: float, params: dict | None = None) -> float:
    params = PARAMS if params is None else params
    if cause in SYMPTOMS or not params:
        return score
    a, b = params.get("causes", {}).get(cause) or params["pooled"]
    return round(min(HI, max(LO, sigmoid(a * logit(score) + b))), 3)


def apply(finding: Finding) -> Finding:
    """The finding with its evidence score replaced by the calibrated probability (the score kept in observed)."""
    p = probability(finding.cause, finding.confidence)
    if p == finding.confidence:
        return finding
    observed = {**finding.observed, "evidence_score": finding.confidence}
    return finding.model_copy(update={"confidence": p, "observed": observed})
