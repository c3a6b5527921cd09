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
    ratio_threshold: float = Field(
        10.0, gt=1, description="SageMaker ClassImbalance threshold_imbalance: largest/smallest count above this."
    )
    min_recall: float = Field(
        0.3, gt=0, lt=1, description="SageMaker threshold_misprediction 0.7: a class recalled below this is ignored."
    )
    recall_ratio: float = Field(
        0.5, gt=0, lt=1, description="…or recalled at most this fraction of the best-recalled class."
    )
    minority_ratio: float = Field(
        1.5,
        gt=1,
        description="Recall evidence counts only when the poorly recalled classes have this many "
        "times fewer training images than the largest class.",
    )
    persist: int = Field(3, ge=1, description="The recall disparity must hold in each of the latest this many epochs.")
    above_chance: float = Field(
        0.15, ge=0, lt=1, description="…while val accuracy is above 1/K + above_chance × (1 − 1/K)."
    )


class ClassImbalance(Rule):
    """Needs imbalanced counts: counts alone above SageMaker's threshold, or counts below it together with a
    per-class recall disparity on the under-represented classes that persists while the model is clearly above
    chance. Balanced counts never make a class-imbalance finding: a model at chance predicts one class because it
    learned nothing, and a hard class is recalled less because it is hard.

    Count-only imbalance is a pre-training warning (an empty history): never a finding on a run with epochs, so
    it never stalls a verdict, stops a job or triggers the autopilot, and it is silent with class_weight
    "balanced".

    Reference: SageMaker Debugger ClassImbalance (threshold_imbalance 10, threshold_misprediction 0.7).
    """

    id = "class_imbalance"
    reference = "SageMaker Debugger ClassImbalance"
    causes = ("class_imbalance",)
    Params = ClassImbalanceParams
    judges_progress = False  # counts alone can be judged before training: they say nothing about progress

    def min_epochs(self, p: ClassImbalanceParams) -> int:
        return 0

    def check(self, view: View, p: ClassImbalanceParams) -> list[Finding] | Abstention:
        counts = view.context.class_counts_train
        if not counts:
            return self.abstain_missing("class_counts_train")
        hi, lo = max(counts.values()), min(counts.values())
        ratio = math.inf if lo == 0 else hi / lo
        observed: dict = {"count_ratio": ratio if math.isfinite(ratio) else "inf", "class_counts": counts}
        signals: list[str] = []
        epochs: list[int] = []
        flagged = {c for c, v in counts.items() if v * p.ratio_threshold < hi}
        severe = gt(ratio, p.ratio_threshold)
        minority = {c for c, v in counts.items() if v * p.minority_ratio <= hi}
        low = self._persistent_low_recall(view, p)
        if low is not None and minority:
            classes, seen = low
            on_minority = sorted(set(classes) & minority)
            observed["low_recall_classes"] = classes
            if on_minority:
                signals.append("minority_recall")
                flagged.update(on_minority)
                epochs += seen
        # Counts alone are a warning before training, never a verdict on a run: once epochs exist they only
        # support recall evidence, and class_weight "balanced" already answers them.
        if severe and (("minority_recall" in signals) or (view.n == 0 and view.spec.class_weight != "balanced")):
            signals.insert(0, "count_ratio")
        if not signals:
            return []
        confidence = 0.85 if len(signals) == 2 else (0.8 if signals == ["count_ratio"] else 0.75)
        spec = view.spec
        classes = sorted(flagged, key=lambda c: counts.get(c, 0))
        return [
            Finding(
                rule=self.id,
                cause="class_imbalance",
                confidence=clamp(confidence),
                summary=f"Class imbalance: training counts {hi}:{lo} (ratio {ratio:.1f})"
                + (" and the under-represented classes are rarely recalled" if "minority_recall" in signals else "")
                + (f"; affected classes: {', '.join(classes[:5])}" if classes else "")
                + ".",
                thresholds=p.model_dump(),
                observed={**observed, "signals": signals},
                epochs=sorted(set(epochs)),
                remedies=R.ranked(
                    R.balance_class_weights(spec), R.augment(spec), R.collect_more_data(classes or ["minority classes"])
                ),
            )
        ]

    @staticmethod
    def _persistent_low_recall(view: View, p: ClassImbalanceParams) -> tuple[list[str], list[int]] | None:
        """Classes recalled poorly in each of the latest `persist` epochs while val accuracy is clearly above chance."""
        bar = view.chance_bar(p.above_chance)
        val_acc = view.series("val_accuracy")
        per_epoch = [(r.epoch, r.val_recall or _from_confusion(view, r.confusion)) for r in view.records[-p.persist :]]
        if (
            bar is None
            or len(per_epoch) < p.persist
            or not val_acc
            or not all(v > bar for v in val_acc.tail(p.persist))
        ):
            return None
        common: set[str] | None = None
        for _, recall in per_epoch:
            if not recall:
                return None
            known = {k: v for k, v in recall.items() if v is not None}
            best = max(known.values(), default=0.0)
            low = {k for k, v in known.items() if lt(v, p.min_recall) or le(v, p.recall_ratio * best)}
            common = low if common is None else common & low
        return (sorted(common), [e for e, _ in per_epoch]) if common else None


def _from_confusion(view: View, matrix: list[list[int]] | None) -> dict[str, float | None] | None:
    if not matrix:
        return None
    ctx = view.context
    names = sorted(ctx.class_counts_val or ctx.class_counts_train or {})  # Keras orders classes alphanumerically
    if len(names) != len(matrix):
        names = [str(i) for i in range(len(matrix))]
    return {
        n: (row[i] / sum(row) if sum(row) and i < len(row) else None) for i, (n, row) in enumerate(zip(names, matrix))
    }


RULE = ClassImbalance()
