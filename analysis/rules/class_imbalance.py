"""Class imbalance: skewed class counts, ignored classes, or a model that predicts the majority class."""

from __future__ import annotations

import math

from pydantic import Field

from analysis import remedies as R
from analysis.compare import gt, le, lt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.view import View


class ClassImbalanceParams(Params):
    ratio_threshold: float = Field(10.0, gt=1, description="SageMaker ClassImbalance threshold_imbalance: largest/smallest count above this.")
    min_recall: float = Field(0.3, gt=0, lt=1, description="SageMaker threshold_misprediction 0.7: a class recalled below this is ignored.")
    majority_margin: float = Field(0.02, ge=0, description="val accuracy within this of the majority share looks like majority voting.")


class ClassImbalance(Rule):
    """Works from class counts alone (a pre-training check) and uses per-class recall once epochs exist.

    Reference: SageMaker Debugger ClassImbalance (threshold_imbalance 10, threshold_misprediction 0.7).
    """

    id = "class_imbalance"
    reference = "SageMaker Debugger ClassImbalance"
    causes = ("class_imbalance",)
    Params = ClassImbalanceParams

    def min_epochs(self, p: ClassImbalanceParams) -> int:
        return 0

    def check(self, view: View, p: ClassImbalanceParams) -> list[Finding] | Abstention:
        ctx = view.context
        counts = ctx.class_counts_train or ctx.class_counts_val
        recall = _recall(view)
        if not counts and recall is None:
            return self.abstain_missing("class_counts_train or class_counts_val", "val_recall or confusion")
        observed: dict = {}
        signals: list[str] = []
        flagged: set[str] = set()
        epochs: list[int] = []

        if counts:
            hi, lo = max(counts.values()), min(counts.values())
            ratio = math.inf if lo == 0 else hi / lo
            observed.update(count_ratio=ratio if math.isfinite(ratio) else "inf", class_counts=counts)
            if gt(ratio, p.ratio_threshold):
                signals.append("count_ratio")
                flagged.update(k for k, v in counts.items() if v * p.ratio_threshold < hi)
        minority = {k for k, v in counts.items() if v < sum(counts.values()) / len(counts)} if counts else set()

        if recall is not None:
            epoch, per_class = recall
            low = sorted(k for k, v in per_class.items() if v is not None and lt(v, p.min_recall))
            observed["val_recall"] = per_class
            if low:
                signals.append("low_recall")
                flagged.update(low)
                observed["low_recall_classes"] = low
                epochs.append(epoch)

        share = self._majority_share(view)
        val_acc = view.series("val_accuracy")
        if share is not None and val_acc:
            k = view.num_classes or 1
            observed.update(majority_share=round(share, 4), val_accuracy=val_acc.last)
            # A balanced set at chance is not imbalance: the majority must stand out from 1/K.
            if gt(share, 1 / k + p.majority_margin) and le(abs(val_acc.last - share), p.majority_margin):
                signals.append("majority_accuracy")
                epochs.append(val_acc.last_epoch)

        if not signals:
            return []
        recall_only = signals == ["low_recall"] and not (set(observed.get("low_recall_classes", [])) & minority)
        confidence = 0.3 if recall_only else {1: 0.5, 2: 0.72, 3: 0.85}[len(signals)]
        spec = view.spec
        classes = sorted(flagged, key=lambda c: (counts or {}).get(c, 0))
        return [Finding(
            rule=self.id, cause="class_imbalance", confidence=clamp(confidence),
            summary=f"Class imbalance: {', '.join(s.replace('_', ' ') for s in signals)}"
                    + (f"; affected classes: {', '.join(classes[:5])}" if classes else "") + ".",
            thresholds=p.model_dump(), observed={**observed, "signals": signals}, epochs=sorted(set(epochs)),
            remedies=R.ranked(R.balance_class_weights(spec), R.augment(spec), R.collect_more_data(classes or ["minority classes"])),
        )]

    @staticmethod
    def _majority_share(view: View) -> float | None:
        ctx = view.context
        support = view.last_with("val_support")
        counts = ctx.class_counts_val or (support[1] if support else None) or ctx.class_counts_train
        if not counts:
            confusion = view.last_with("confusion")
            counts = {str(i): sum(row) for i, row in enumerate(confusion[1])} if confusion else None
        total = sum(counts.values()) if counts else 0
        return max(counts.values()) / total if total else None


def _recall(view: View) -> tuple[int, dict[str, float | None]] | None:
    """Per-class validation recall at the latest epoch: recorded, or from the confusion matrix (rows = true class)."""
    found = view.last_with("val_recall")
    if found:
        return found
    found = view.last_with("confusion")
    if not found:
        return None
    epoch, matrix = found
    ctx = view.context
    names = sorted(ctx.class_counts_val or ctx.class_counts_train or {})  # Keras orders classes alphanumerically
    if len(names) != len(matrix):
        names = [str(i) for i in range(len(matrix))]
    return epoch, {n: (row[i] / sum(row) if sum(row) else None) for i, (n, row) in enumerate(zip(names, matrix))}


RULE = ClassImbalance()
