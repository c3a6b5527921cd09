"""Linear probe and label check, both on the base's pooled features (scikit-learn; no TensorFlow here).

The linear probe measures what the features already separate (Alain & Bengio 2016): out-of-fold accuracy of a
logistic regression, with its Wilson interval, against chance. Its out-of-fold probabilities feed the label check
(confident learning, Northcutt et al. 2021): cleanlab when installed, else `confident.find_issues`."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from worker.probes import confident

MAX_FOLDS = 5
SIGNIFICANCE = 0.025  # one side of a 95 % interval, as the linear probe's Wilson bound


def folds_for(labels: np.ndarray, n_classes: int) -> int:
    """k ≤ 5, limited by the smallest class: each fold must hold every class."""
    counts = np.bincount(labels, minlength=n_classes)
    return int(min(MAX_FOLDS, counts.min()))


class OutOfFold(NamedTuple):
    probs: np.ndarray | None  # out-of-sample class probabilities of every image; None when k < 2
    folds: int
    C: float | None  # the logistic regression's inverse L2 strength, averaged over the folds


def prior_strength(standardised: np.ndarray) -> float:
    """sklearn's C for a Gaussian prior that gives each logit unit variance over these images: the penalty
    ‖w‖²/2C is w ~ N(0, C·I), so a logit w·x varies by C·‖x‖², and C = 1 / mean ‖x‖² (1/d over d standardised
    features; LeCun's initialisation scales a layer's weights by 1/fan_in for the same reason). With far fewer
    images than features (128 against 2048) the default C = 1 lets the fit interpolate the labels, wrong ones
    included, and its out-of-fold probabilities say little about either; the prior keeps the weights to what
    many images agree on, and fades as images outnumber features."""
    return 1.0 / max(float(np.mean(np.sum(standardised**2, axis=1))), 1e-12)


def out_of_fold(features: np.ndarray, labels: np.ndarray, n_classes: int, *, seed: int = 0) -> OutOfFold:
    """Out-of-sample class probabilities for every image (StratifiedKFold, k ≤ 5): in each fold a logistic
    regression on standardised features, both the scaler and C (`prior_strength`) from the training folds only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    k = folds_for(labels, n_classes)
    if k < 2:
        return OutOfFold(None, k, None)
    probs, strengths = np.zeros((len(labels), n_classes)), []
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # One thread: the solver's many small vector operations only make BLAS and OpenMP threads wait on each other
    # (five to twenty times slower on a busy two-core machine, for the same fit)
    with threadpool_limits(1):
        for train, test in cv.split(features, labels):
            scaler = StandardScaler().fit(features[train])
            x = scaler.transform(features[train])
            strengths.append(prior_strength(x))
            model = LogisticRegression(C=strengths[-1], max_iter=2000).fit(x, labels[train])
            probs[np.ix_(test, model.classes_)] = model.predict_proba(scaler.transform(features[test]))
    return OutOfFold(probs, k, float(np.mean(strengths)))


def favours_given_labels(labels: np.ndarray, probs: np.ndarray) -> float:
    """One-sided p-value that the out-of-fold probabilities say nothing about the given labels: the probability of
    each image's given label against what the same probabilities give a label drawn by the class shares alone,
    tested for a mean above zero (t-test over the images). Uses every probability, not only the argmax: with many
    labels wrong, accuracy against them stays near chance even on features that separate the classes."""
    from scipy.stats import ttest_1samp

    shares = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
    excess = probs[np.arange(len(labels)), labels] - probs @ shares
    if np.ptp(excess) == 0:  # constant probabilities: nothing told apart
        return 1.0
    return float(ttest_1samp(excess, 0.0, alternative="greater").pvalue)


def wilson(successes: int, n: int, confidence: float = 0.95) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    *,
    seed: int = 0,
    fitted: OutOfFold | None = None,
) -> dict[str, Any]:
    """`fitted`: `out_of_fold`'s result for these features and labels, when already computed."""
    labels = np.asarray(labels, dtype="int64")
    k_classes, n = len(classes), len(labels)
    probs, folds, strength = fitted or out_of_fold(features, labels, k_classes, seed=seed)
    chance = float(max(1 / k_classes, np.bincount(labels, minlength=k_classes).max() / max(1, n)))
    if probs is None:
        return {
            "folds": folds,
            "images": n,
            "accuracy": None,
            "interval": None,
            "chance": chance,
            "informative": None,
            "C": None,
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
        "C": strength,
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
    fitted: OutOfFold | None = None,
    use_cleanlab: bool | None = None,
) -> dict[str, Any]:
    """`fitted`: `out_of_fold`'s result for these features and labels, when already computed (the linear probe's)."""
    labels = np.asarray(labels, dtype="int64")
    probs, folds, _ = fitted or out_of_fold(features, labels, len(classes), seed=seed)
    if probs is None:
        return {
            "method": "plateau",
            "images": len(labels),
            "classes": classes,
            "noise_rate": 0.0,
            "p_value": None,
            "pair_noise": [],
            "issues": [],
            "truncated": False,
            "statement": f"too few images for out-of-sample probabilities (the smallest class has {folds})",
        }
    p_value = favours_given_labels(labels, probs)
    if p_value >= SIGNIFICANCE:
        # features that do not separate the classes make every label look doubtful: suspect none
        return {
            "method": "plateau",
            "images": len(labels),
            "classes": classes,
            "noise_rate": None,
            "p_value": p_value,
            "pair_noise": [],
            "issues": [],
            "truncated": False,
            "statement": (
                f"the base's features do not separate these classes better than chance (the out-of-fold "
                f"probabilities of the given labels are no higher than the class shares make them, p = "
                f"{p_value:.2f}), so a label check cannot tell wrong labels from weak features"
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
        "p_value": p_value,
        "pair_noise": pair_noise,
        "issues": issues,
        "truncated": False,
        "statement": (
            f"confident learning on out-of-fold probabilities suspects {len(issues)} of {len(labels)} training "
            f"labels (estimated noise rate {noise:.2f}){top}"
        ),
    }
