"""Did the plant manifest? A DeepCrime-style "killed" check per case, judged from the run's own metrics
against the healthy_converged run of the same family and seed — never from any diagnosis.

Each check returns (manifested, observed): manifested is None when it cannot be judged (no healthy run of
that family and seed recorded yet, or a signal missing); such a run is listed and not scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable

MARGIN = 0.15  # accuracy lost to the plant, in absolute terms


def _col(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def _recall(row: dict) -> dict[str, float] | None:
    if row.get("val_recall"):
        return {k: v for k, v in row["val_recall"].items() if v is not None}
    m = row.get("confusion")
    if not m:
        return None
    return {str(i): r[i] / sum(r) for i, r in enumerate(m) if sum(r)}


def _result(ok: bool | None, **observed) -> tuple[bool | None, dict]:
    return ok, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in observed.items()}


def healthy(rows, _healthy, chance):
    val = _col(rows, "val_accuracy")
    return _result(
        bool(val) and val[-1] >= chance + 0.3, final_val_accuracy=val[-1] if val else None, needed=chance + 0.3
    )


def frozen_random_init(rows, _healthy, chance):
    te = _col(rows, "train_eval_accuracy")
    return _result(
        bool(te) and max(te) <= chance + MARGIN if te else None,
        max_train_eval_accuracy=max(te) if te else None,
        limit=chance + MARGIN,
    )


def lr_too_high(rows, base, _chance):
    nonfinite = any(
        not isinstance(r.get("loss"), (int, float))
        or not math.isfinite(r["loss"])
        or (r.get("nonfinite_batches") or 0) > 0
        for r in rows
    )
    val, ref = _col(rows, "val_accuracy"), _col(base or [], "val_accuracy")
    if not ref:
        return _result(True if nonfinite else None, nonfinite=nonfinite)
    drop = max(ref) - max(val, default=0.0)
    return _result(nonfinite or drop >= MARGIN, nonfinite=nonfinite, best_val_accuracy_drop=drop)


def lr_too_high_unfrozen(rows, base, _chance):
    vl, val, ref = _col(rows, "val_loss"), _col(rows, "val_accuracy"), _col(base or [], "val_accuracy")
    blowup = max(vl) / vl[0] if vl and vl[0] > 0 else None
    drop = max(ref) - max(val, default=0.0) if ref else None
    if blowup is None and drop is None:
        return _result(None)
    return _result(
        (blowup or 0) >= 3 or (drop or 0) >= MARGIN, val_loss_max_over_first=blowup, best_val_accuracy_drop=drop
    )


def lr_too_low(rows, base, _chance):
    val, ref = _col(rows, "val_accuracy"), _col(base or [], "val_accuracy")
    if not (val and ref):
        return _result(None)
    return _result(ref[-1] - val[-1] >= MARGIN, final_val_accuracy_drop=ref[-1] - val[-1])


def regularization_too_strong(rows, base, _chance):
    te, ref = _col(rows, "train_eval_accuracy"), _col(base or [], "train_eval_accuracy")
    if not (te and ref):
        return _result(None)
    return _result(max(ref) - max(te) >= MARGIN, best_train_eval_accuracy_drop=max(ref) - max(te))


def overfitting(rows, _base, _chance):
    pairs = [
        (r["train_eval_accuracy"], r["val_accuracy"])
        for r in rows
        if r.get("train_eval_accuracy") is not None and r.get("val_accuracy") is not None
    ]
    vl = _col(rows, "val_loss")
    if not pairs or not vl:
        return _result(None)
    gaps = [t - v for t, v in pairs]
    rising = vl[-1] >= 1.1 * min(vl)
    widening = gaps[-1] - gaps[len(gaps) // 2] >= 0.05
    return _result(
        gaps[-1] >= 0.25 and (rising or widening),
        final_gap=gaps[-1],
        val_loss_over_min=vl[-1] / min(vl) if min(vl) > 0 else None,
        gap_widening=widening,
    )


def imbalance_mild(rows, _base, chance):
    last = next((r for r in reversed(rows) if _recall(r)), None)
    val = _col(rows, "val_accuracy")
    if last is None or not val:
        return _result(None)
    recall = _recall(last)
    lo, hi = min(recall.values()), max(recall.values())
    return _result(lo <= 0.5 * hi and val[-1] >= chance + 0.1, min_recall=lo, max_recall=hi, final_val_accuracy=val[-1])


def label_noise(rows, base, _chance):
    te, ref = _col(rows, "train_eval_accuracy"), _col(base or [], "train_eval_accuracy")
    if not (te and ref):
        return _result(None)
    return _result(ref[-1] - te[-1] >= 0.1, final_train_eval_accuracy_drop=ref[-1] - te[-1])


Check = Callable[[list[dict], list[dict] | None, float], tuple[bool | None, dict]]

# What each check says, as written in docs/benchmarks.md.
DESCRIPTIONS = {
    "healthy": "val_accuracy at the end ≥ chance + 0.3 (otherwise the baseline itself is not healthy)",
    "frozen_random_init": "train_eval_accuracy never exceeds chance + 0.15",
    "lr_too_high": "best val_accuracy ≥ 0.15 below the healthy run's, or a non-finite loss",
    "lr_too_high_unfrozen": "max val_loss ≥ 3× its epoch-1 value, or best val_accuracy ≥ 0.15 below the healthy run's",
    "lr_too_low": "val_accuracy at the end ≥ 0.15 below the healthy run's",
    "regularization_too_strong": "best train_eval_accuracy ≥ 0.15 below the healthy run's",
    "overfitting": "final train_eval_accuracy − val_accuracy ≥ 0.25, and val_loss at the end ≥ 10 % above its "
    "minimum or the gap grew by ≥ 0.05 over the last half",
    "imbalance_mild": "at the end, min per-class val recall ≤ 0.5 × max, with val_accuracy ≥ chance + 0.1",
    "label_noise": "train_eval_accuracy at the end ≥ 0.1 below the healthy run's",
}
CHECKS: dict[str, Check] = {name: globals()[name] for name in DESCRIPTIONS}


def judge(check: str, rows: list[dict], healthy_rows: list[dict] | None, n_classes: int) -> tuple[bool | None, dict]:
    return CHECKS[check](rows, healthy_rows, 1 / n_classes)
