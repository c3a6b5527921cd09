"""Fit the confidence calibration on the development corpus and write analysis/calibration/params.json.

    .venv/bin/python -m analysis.calibration.fit

Pairs (cause, evidence score, right?) come from every finding of a cause on the manifested runs of the
development families (held-out families are never used); a finding is right when it names the planted cause or
an accepted alternative. A run recorded with probes gives both its views (`evaluate.with_probes`): curves only,
and with the probes' results, so the findings that rest on probe results are fitted too. A pooled logistic fit
on logit(score) is the prior; each cause's fit is pulled towards it by an L2 penalty, so a cause with few
findings stays near the pooled curve (Platt scaling; scikit-learn's guide prefers it to isotonic regression
below ~1,000 samples).
"""

from __future__ import annotations

import json
import math

import numpy as np
from scipy.optimize import minimize

from analysis import calibration, evaluate

SHRINK = 0.3  # strength of the pull towards the pooled fit, in units of findings


def pairs(fixtures: list[dict]) -> list[tuple[str, float, bool]]:
    """(cause, raw evidence score, right?) for every causal finding on the manifested development runs."""
    saved = dict(calibration.PARAMS)
    calibration.PARAMS.clear()  # raw scores
    try:
        development = [fx for fx in fixtures if not fx.get("held_out")]
        runs = [evaluate.run_summary(fx, first=False) for fx in development + evaluate.probed(development)]
    finally:
        calibration.PARAMS.update(saved)
    return [
        (f[0], f[1], f[0] == r["planted"] or f[0] in r["accepted"])
        for r in runs
        if r["manifested"] is True
        for f in r["findings"]
        if f[0] not in calibration.SYMPTOMS
    ]


def _fit(x: np.ndarray, y: np.ndarray, prior: np.ndarray | None, weight: float) -> np.ndarray:
    def loss(w: np.ndarray) -> float:
        z = np.clip(w[0] * x + w[1], -30, 30)
        nll = np.sum(np.logaddexp(0, z) - y * z)
        return float(nll + (weight * np.sum((w - prior) ** 2) if prior is not None else 1e-3 * np.sum(w**2)))

    start = prior if prior is not None else np.array([1.0, 0.0])
    # a ≥ 0: stronger evidence never means a lower probability
    return minimize(loss, start, method="L-BFGS-B", bounds=[(0.0, None), (None, None)]).x


def fit(data: list[tuple[str, float, bool]]) -> dict:
    x = np.array([calibration.logit(s) for _, s, _ in data])
    y = np.array([float(ok) for _, _, ok in data])
    pooled = _fit(x, y, None, 0.0)
    causes = {}
    for cause in sorted({c for c, _, _ in data}):
        idx = np.array([c == cause for c, _, _ in data])
        causes[cause] = [round(float(v), 4) for v in _fit(x[idx], y[idx], pooled, SHRINK)]
    return {"pooled": [round(float(v), 4) for v in pooled], "causes": causes, "findings": len(data)}


def main() -> None:
    params = fit(pairs(evaluate.load_corpus()))
    calibration.PARAMS_FILE.write_text(json.dumps(params, indent=1) + "\n")
    print(json.dumps(params, indent=1))
    assert all(math.isfinite(v) for ab in params["causes"].values() for v in ab)


if __name__ == "__main__":
    main()
