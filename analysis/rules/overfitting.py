"""Overfitting: generalisation is getting worse, or a large train/validation gap keeps growing.

A ratio alone never fires it: SageMaker's Overfit ratio of 0.1 holds for nearly every fine-tune, healthy or not.
A run whose validation still improves is not overfitting, however large its gap. Nor is a head on a frozen base
that generalises as well as a linear probe of the same features does: its gap is the features' limit.
"""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, le, lt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.series import Series
from analysis.stats import wilson
from analysis.view import View

KERAS_BIAS = (
    "Keras' training loss/accuracy are training-mode running averages (dropout, augmentation on), "
    "so the gap is biased, usually understated; record train_eval_* for an honest one."
)


class OverfittingParams(Params):
    ratio_threshold: float = Field(
        0.1, gt=0, description="SageMaker Overfit: (val_loss - train_loss) / train_loss; reported, never fires alone."
    )
    val_rise_factor: float = Field(
        1.1, gt=1, description="AutoTrainer 'test turned bad': val_loss at least this multiple of its minimum…"
    )
    val_rise_min: float = Field(
        0.05, ge=0, description="…and at least this much above it, while the training loss kept falling."
    )
    min_gap: float = Field(
        0.2,
        gt=0,
        description="Train - val accuracy must be at least this for any overfitting finding: a "
        "large gap (AutoTrainer's 0.1 flags the mild gap of many healthy fine-tunes).",
    )
    widen_by: float = Field(
        0.05, gt=0, description="The accuracy gap grew by at least this since validation accuracy was best."
    )
    overconfident_rise: float = Field(
        2.0,
        gt=1,
        description="val_loss at least this multiple of its minimum while the training loss falls: overconfidence, "
        "overfitting's loss signature; then a gap of `overconfident_gap` beyond sampling noise is enough.",
    )
    overconfident_gap: float = Field(0.05, gt=0, description="The accuracy gap needed with an overconfident val_loss.")
    recent: int = Field(
        2,
        ge=1,
        description="Validation improving (a new best loss or accuracy) within this many latest epochs clears the run.",
    )
    z: float = Field(
        2.0,
        ge=0,
        description="The gap must also exceed z standard errors of the two accuracy estimates "
        "(binomial, from the validation and training-subset sizes): a gap within "
        "sampling noise is no evidence.",
    )


class Overfitting(Rule):
    """References: AutoTrainer overfit features (accuracy gap 0.10; train loss falling while val loss rises);
    UMLAUT overfitting heuristic (Δval_loss > 0 while Δtrain_loss ≤ 0); SageMaker Debugger Overfit ratio, reported
    as evidence only."""

    id = "overfitting"
    reference = "AutoTrainer (utils/monitor.py) overfit features; UMLAUT overfitting; SageMaker Debugger Overfit"
    causes = ("overfitting",)
    Params = OverfittingParams

    def min_epochs(self, p: OverfittingParams) -> int:
        return p.recent + 2

    def check(self, view: View, p: OverfittingParams) -> list[Finding] | Abstention:
        train_loss, train_acc = view.pick("train_eval_loss", "loss"), view.pick("train_eval_accuracy", "accuracy")
        val_loss, val_acc = view.series("val_loss"), view.series("val_accuracy")
        if not (train_acc and val_acc):
            return self.abstain_missing(
                *(["val_accuracy"] if not val_acc else []),
                *(["train_eval_accuracy or accuracy"] if not train_acc else []),
            )
        ep, ta, va = view.paired(train_acc, val_acc)
        if not ep:
            return []
        gaps = [t - v for t, v in zip(ta, va)]
        noise = p.z * view.accuracy_gap_se(ta[-1], va[-1])
        observed: dict = {
            "accuracy_gap": round(gaps[-1], 4),
            "train_accuracy": ta[-1],
            "val_accuracy": va[-1],
            "gap_noise": round(noise, 4),
        }
        rise = self._val_rise(view, train_loss, val_loss, p) if train_loss and val_loss else None
        # an overconfident model: val_loss far above its minimum while training fits on, with a real gap
        overconfident = bool(rise and ge(rise["val_loss_rise"], p.overconfident_rise))
        min_gap = p.overconfident_gap if overconfident else p.min_gap
        if not ge(gaps[-1], max(min_gap, noise)) or (not overconfident and self._improving(val_loss, val_acc, p)):
            return []
        fired: list[str] = []
        epochs: set[int] = {ep[-1]}
        if rise:
            fired.append("val_loss_rising")
            observed.update(rise)
            epochs.update(e for e in val_loss.epochs if e >= rise["val_loss_min_epoch"])
        best = va.index(max(va))
        if best < len(va) - 1 and ge(gaps[-1] - gaps[best], p.widen_by):
            fired.append("gap_widening")
            observed.update(gap_at_best_val_accuracy=round(gaps[best], 4), best_val_accuracy_epoch=ep[best])
            epochs.update(ep[best:])
        if not fired or self._at_features_ceiling(view, max(va)):
            return []
        if train_loss and val_loss:
            _, tl, vl = view.paired(train_loss, val_loss)
            if tl and tl[-1] > 0:
                observed["loss_ratio"] = round((vl[-1] - tl[-1]) / tl[-1], 4)
        biased = train_acc.name == "accuracy"
        confidence = (0.85 if len(fired) == 2 else 0.7) + (0.05 if ge(gaps[-1], 2 * p.min_gap) else 0.0)
        if biased:
            confidence *= 0.85
        observed.update(signals=fired, train_source=train_acc.name, gap_biased=biased)
        spec = view.spec
        return [
            Finding(
                rule=self.id,
                cause="overfitting",
                confidence=clamp(confidence),
                summary=f"Overfitting: {' and '.join(s.replace('_', ' ') for s in fired)}; train/val accuracy gap "
                f"{gaps[-1]:.2f} ({ta[-1]:.2f} vs {va[-1]:.2f})." + (f" {KERAS_BIAS}" if biased else ""),
                thresholds=p.model_dump(),
                observed=observed,
                epochs=sorted(epochs),
                remedies=R.ranked(
                    R.augment(spec),
                    R.increase_dropout(spec),
                    R.freeze_more_layers(spec),
                    R.add_l2(spec),
                    R.add_early_stopping(spec),
                ),
            )
        ]

    @staticmethod
    def _at_features_ceiling(view: View, best_val: float) -> bool:
        """A head on a frozen base whose best validation accuracy is not below a linear probe of the same features
        (k-fold, out of sample) beyond binomial noise: it already generalises as far as those features allow, so
        regularising the head cannot close its train/validation gap, and the gap is not a stall's cause."""
        probe = view.probes.get("linear_probe")
        if probe is None or not view.spec.base_frozen:
            return False
        n = view.sample_size("val_accuracy")
        own = wilson(best_val * n, n) if n else None
        return own is not None and not lt(own[1], probe.accuracy)

    @staticmethod
    def _improving(val_loss: Series, val_acc: Series, p: OverfittingParams) -> bool:
        """A new best validation accuracy within the latest `recent` epochs, with val_loss not above its best's."""
        n = len(val_acc)
        best_acc = val_acc.values.index(max(val_acc.values))
        if best_acc < n - p.recent:
            return False
        if not val_loss:
            return True
        return le(val_loss.last, min(val_loss.values) * p.val_rise_factor)

    @staticmethod
    def _val_rise(view: View, train: Series, val: Series, p: OverfittingParams) -> dict | None:
        """val_loss now well above its minimum while the training loss is below its value then."""
        epochs, tl, vl = view.paired(train, val)
        if len(vl) < 2:
            return None
        i = vl.index(min(vl))
        if i == len(vl) - 1 or vl[i] <= 0:
            return None
        if not (ge(vl[-1], p.val_rise_factor * vl[i]) and ge(vl[-1] - vl[i], p.val_rise_min) and tl[-1] < tl[i]):
            return None
        return {
            "val_loss_min": vl[i],
            "val_loss_min_epoch": epochs[i],
            "val_loss_last": vl[-1],
            "val_loss_rise": round(vl[-1] / vl[i], 4),
            "train_loss_change_since": round(tl[-1] - tl[i], 4),
        }


RULE = Overfitting()
