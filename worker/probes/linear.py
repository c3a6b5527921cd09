"""Linear probe and label check, both on the base's pooled features (scikit-learn; no TensorFlow here).

The linear probe measures what the features already separate (Alain & Bengio 2016): out-of-fold accuracy of a
logistic regression, with its Wilson interval, against chance. Its out-of-fold probabilities feed the label check
(confident learning, Northcutt et al. 2021): cleanlab when installed, else `confident.find_issues`."""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.probes import confident

MAX_FOLDS = 5


def folds_for(labels: np.ndarray, n_classes: int) -> int:
    """k ≤ 5, limited by the smallest class: each fold must hold every class."""
    counts = np.bincount(labels, minlength=n_classes)
    return int(min(MAX_FOLDS, counts.min()))


def out_of_fold(features: np.ndarray, labels: np.ndarray, n_classes: int, *, seed: int = 0) -> tuple[np.ndarray, int]:
    """Out-of-sample class probabilities for every image (StratifiedKFold, k ≤ 5) and k; (None, k) when k < 2."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    k = folds_for(labels, n_classes)
    if k < 2:
        return None, k
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # One thread: the solver's many small vector operations only make BLAS and OpenMP threads wait on each other
    # (five to twenty times slower on a busy two-core machine, for the same fit)
    with threadpool_limits(1):
        return cross_val_predict(model, features, labels, cv=cv, method="predict_proba"), k


def wilson(successes: int, n: int, confidence: float = 0.95) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def linear_probe(
    features: np.ndarray, labels: np.ndarray, classes: list[str], *, seed: int = 0, probs: np.ndarray | None = None
) -> dict[str, Any]:
    labels = np.asarray(labels, dtype="int64")
    k_classes, n = len(classes), len(labels)
    if probs is None:
        probs, folds = out_of_fold(features, labels, k_classes, seed=seed)
    else:
        folds = folds_for(labels, k_classes)
    chance = float(max(1 / k_classes, np.bincount(labels, minlength=k_classes).max() / max(1, n)))
    if probs is None:
        return {
            "folds": folds,
            "images": n,
            "accuracy": None,
            "interval": None,
            "chance": chance,
            "informative": None,
            "truncated": False,
            "statement": f"too few images for a cross-validated linear probe (the smallest class has {folds})",
        }
    correct = int(np.sum(probs.argmax(1) == labels))
    accuracy, interval = correct / n, wilson(correct, n)
    informative = interval[0] > chance
    verdict = "separate these classes" if informative else "do not separate these classes better than chance"
    return {
        "folds": folds,
        "images": n,
        "accuracy": accuracy,
        "interval": interval,
        "chance": chance,
        "informative": informative,
        "truncated": False,
        "statement": (
            f"a linear classifier on the base's features reaches {accuracy:.2f} out of fold "
            f"(95 % interval {interval[0]:.2f}–{interval[1]:.2f}, {n} images, chance {chance:.2f}): the features "
            f"{verdict}; the head-only ceiling is about {accuracy:.2f}"
        ),
    }


def label_check(
    features: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    files: list[str],
    *,
    seed: int = 0,
    probs: np.ndarray | None = None,
    use_cleanlab: bool | None = None,
) -> dict[str, Any]:
    labels = np.asarray(labels, dtype="int64")
    if probs is None:
        probs, folds = out_of_fold(features, labels, len(classes), seed=seed)
        if probs is None:
            return {
                "method": "plateau",
                "images": len(labels),
                "classes": classes,
                "noise_rate": 0.0,
                "pair_noise": [],
                "issues": [],
                "truncated": False,
                "statement": f"too few images for out-of-sample probabilities (the smallest class has {folds})",
            }
    correct = int(np.sum(probs.argmax(1) == labels))
    lower = wilson(correct, len(labels))[0]
    chance = float(max(1 / len(classes), np.bincount(labels, minlength=len(classes)).max() / len(labels)))
    if lower <= chance:
        # features that do not separate the classes make every label look doubtful: suspect none
        return {
            "method": "plateau",
            "images": len(labels),
            "classes": classes,
            "noise_rate": None,
            "pair_noise": [],
            "issues": [],
            "truncated": False,
            "statement": (
                f"the base's features do not separate these classes better than chance (out-of-fold accuracy "
                f"{correct / len(labels):.2f}), so a label check cannot tell wrong labels from weak features"
            ),
        }
    found = confident.find_issues(labels, probs, use_cleanlab=use_cleanlab)
    joint = found["joint"]
    pair_noise = [
        {"given": classes[i], "true": classes[j], "rate": float(joint[i, j])}
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and joint[i, j] > 0
    ]
    pair_noise.sort(key=lambda p: -p["rate"])
    issues = []
    for i in found["ranked"]:
        others = probs[i].copy()
        others[labels[i]] = -1.0
        issues.append(
            {
                "file": files[i],
                "given": classes[labels[i]],
                "suspected": classes[int(others.argmax())],
                "score": float(1.0 - probs[i, labels[i]]),
            }
        )
    noise = float(1.0 - np.trace(joint))
    top = f"; most confused: {pair_noise[0]['given']} given for {pair_noise[0]['true']}" if pair_noise else ""
    return {
        "method": found["method"],
        "images": len(labels),
        "classes": classes,
        "noise_rate": noise,
        "pair_noise": pair_noise,
        "issues": issues,
        "truncated": False,
        "statement": (
            f"confident learning on out-of-fold probabilities suspects {len(issues)} of {len(labels)} training "
            f"labels (estimated noise rate {noise:.2f}){top}"
        ),
    }
