"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021), counted as the paper describes, with cleanlab used
instead when it is installed (an optional extra: cleanlab is AGPL-3.0).

`probs` MUST be out-of-sample (cross-validated): in-sample probabilities hide the errors a model memorised."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np


def thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """t_j: the mean predicted probability of class j over the images labelled j."""
    k = probs.shape[1]
    return np.array([probs[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(k)])


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """C[i, j]: images labelled i whose probability of j reaches t_j (the likeliest such j when several do),
    calibrated so each row sums to the number of images labelled i."""
    k = probs.shape[1]
    t = thresholds(labels, probs)
    counts = np.zeros((k, k))
    above = probs >= t - 1e-6
    for given, p, a in zip(labels, probs, above):
        if a.any():
            counts[given, int(np.argmax(np.where(a, p, -1.0)))] += 1
    sizes = np.bincount(labels, minlength=k).astype(float)
    row = counts.sum(1, keepdims=True)
    return np.divide(counts * sizes[:, None], row, out=np.zeros_like(counts), where=row > 0)


def prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, joint_counts: np.ndarray) -> np.ndarray:
    """Boolean mask of issues: for each off-diagonal (given i, true j), the round(C[i, j]) images labelled i with
    the largest margin p_j − p_i."""
    k = probs.shape[1]
    issue = np.zeros(len(labels), dtype=bool)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        for j in range(k):
            n = int(round(joint_counts[i, j]))
            if i == j or n == 0 or not len(members):
                continue
            margin = probs[members, j] - probs[members, i]
            issue[members[np.argsort(-margin)[:n]]] = True
    # never call an image wrong whose given label is its likeliest one
    issue &= probs.argmax(1) != labels
    return issue


def rank_by_self_confidence(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> list[int]:
    idx = np.flatnonzero(mask)
    return [int(i) for i in idx[np.argsort(probs[idx, labels[idx]], kind="stable")]]


def cleanlab_available() -> bool:
    return importlib.util.find_spec("cleanlab") is not None


def find_issues(labels: np.ndarray, probs: np.ndarray, *, use_cleanlab: bool | None = None) -> dict[str, Any]:
    """{"method", "ranked": issue indices, most suspect first, "joint": the estimated joint of (given, true)}."""
    labels = np.asarray(labels, dtype="int64")
    use = cleanlab_available() if use_cleanlab is None else use_cleanlab
    counts = confident_joint(labels, probs)
    joint = counts / counts.sum() if counts.sum() else counts
    if use:
        from cleanlab.filter import find_label_issues

        ranked = find_label_issues(
            labels, probs, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence"
        )
        return {"method": "cleanlab", "ranked": [int(i) for i in ranked], "joint": joint}
    mask = prune_by_noise_rate(labels, probs, counts)
    return {"method": "plateau", "ranked": rank_by_self_confidence(labels, probs, mask), "joint": joint}
