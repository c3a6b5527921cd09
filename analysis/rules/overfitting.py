"""Overfitting: validation loss pulls away from training loss, or validation accuracy lags training accuracy."""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, gt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.view import View

KERAS_BIAS = ("Keras' training loss/accuracy are training-mode running averages (dropout, augmentation on), "
              "so the gap is biased, usually understated; record train_eval_* for an honest one.")


class OverfittingParams(Params):
    ratio_threshold: float = Field(0.1, gt=0, description="SageMaker Overfit: (val_loss - train_loss) / train_loss above this.")
    patience: int = Field(1, ge=1, description="SageMaker Overfit: epochs in a row (ending at the latest) the ratio must exceed the threshold.")
    start_epoch: int = Field(0, ge=0, description="SageMaker Overfit start_step: epochs before this are ignored.")
    val_rise_factor: float = Field(1.05, gt=1, description="val_loss at least this multiple of its minimum while training loss still falls.")
    acc_gap: float = Field(0.10, gt=0, description="AutoTrainer: train - val accuracy at least this…")
    acc_gap_high: float = Field(0.07, gt=0, description="…or at least this when training accuracy is above high_train_acc.")
    high_train_acc: float = Field(0.9, gt=0, le=1, description="AutoTrainer: above this training accuracy the smaller gap applies.")


class Overfitting(Rule):
    """Three signals, each from a public rule; confidence grows with how many agree.

    References: SageMaker Debugger Overfit (ratio_threshold 0.1, patience 1); AutoTrainer overfit features
    (accuracy gap 0.10, 0.07 above 0.9 train accuracy; train loss falling while val loss rises).
    """

    id = "overfitting"
    reference = "SageMaker Debugger Overfit; AutoTrainer (utils/monitor.py) overfit features"
    causes = ("overfitting",)
    Params = OverfittingParams

    def min_epochs(self, p: OverfittingParams) -> int:
        return p.start_epoch + p.patience

    def check(self, view: View, p: OverfittingParams) -> list[Finding] | Abstention:
        train_loss = view.pick("train_eval_loss", "loss")
        train_acc = view.pick("train_eval_accuracy", "accuracy")
        val_loss, val_acc = view.series("val_loss"), view.series("val_accuracy")
        has_loss, has_acc = bool(train_loss and val_loss), bool(train_acc and val_acc)
        if not (has_loss or has_acc):
            missing = [n for n, ok in (("val_loss", val_loss), ("val_accuracy", val_acc)) if not ok]
            if not (train_loss or train_acc):
                missing.append("train_eval_loss/train_eval_accuracy or loss/accuracy")
            return self.abstain_missing(*missing)

        fired: dict[str, bool] = {}
        observed: dict = {}
        epochs: set[int] = set()
        if has_loss:
            ep, tl, vl = view.paired(train_loss, val_loss)
            streak, last_ratio = self._ratio_streak(ep, tl, vl, p)
            fired["loss_ratio"] = len(streak) >= p.patience
            if last_ratio is not None:
                observed.update(loss_ratio=round(last_ratio, 4), loss_ratio_streak=len(streak))
            if fired["loss_ratio"]:
                epochs.update(streak)
            rise = self._val_rise(ep, tl, vl, p.val_rise_factor)
            fired["val_loss_rising"] = rise is not None
            if rise:
                observed.update(rise)
                epochs.update(e for e in ep if e >= rise["val_loss_min_epoch"])
        if has_acc:
            ep, ta, va = view.paired(train_acc, val_acc)
            if ep:
                gap = ta[-1] - va[-1]
                limit = p.acc_gap_high if gt(ta[-1], p.high_train_acc) else p.acc_gap
                fired["accuracy_gap"] = ge(gap, limit)
                observed.update(accuracy_gap=round(gap, 4), accuracy_gap_limit=limit, train_accuracy=ta[-1], val_accuracy=va[-1])
                if fired["accuracy_gap"]:
                    epochs.add(ep[-1])

        signals = [k for k, v in fired.items() if v]
        if not signals:
            return []
        biased = (train_loss is not None and train_loss.name == "loss") or (train_acc is not None and train_acc.name == "accuracy")
        observed.update(signals=signals, train_source=(train_loss or train_acc).name, gap_biased=biased)
        confidence = {1: 0.5, 2: 0.72, 3: 0.85}[len(signals)]
        if observed.get("loss_ratio", 0) > 3 * p.ratio_threshold:
            confidence += 0.05
        if biased:
            confidence *= 0.85
        spec = view.spec
        summary = f"Overfitting: {', '.join(s.replace('_', ' ') for s in signals)}"
        if "loss_ratio" in observed:
            summary += f" (val/train loss ratio {observed['loss_ratio']:.2f} > {p.ratio_threshold:g})"
        summary += "." + (f" {KERAS_BIAS}" if biased else "")
        return [Finding(
            rule=self.id, cause="overfitting", confidence=clamp(confidence), summary=summary,
            thresholds=p.model_dump(), observed=observed, epochs=sorted(epochs),
            remedies=R.ranked(R.augment(spec), R.increase_dropout(spec), R.add_l2(spec),
                              R.add_early_stopping(spec), R.freeze_more_layers(spec)),
        )]

    @staticmethod
    def _ratio_streak(epochs: list[int], train: list[float], val: list[float], p: OverfittingParams) -> tuple[list[int], float | None]:
        """Epochs of the run, ending at the latest epoch, whose (val - train) / train exceeds the threshold;
        walked from the end so only the run itself is visited."""
        streak: list[int] = []
        last = None
        for e, t, v in zip(reversed(epochs), reversed(train), reversed(val)):
            if e < p.start_epoch or t <= 0:
                break
            ratio = (v - t) / t
            last = ratio if last is None else last
            if not gt(ratio, p.ratio_threshold):
                break
            streak.append(e)
        return streak[::-1], last

    @staticmethod
    def _val_rise(epochs: list[int], train: list[float], val: list[float], factor: float) -> dict | None:
        """val_loss now at least `factor` × its minimum while the training loss is still below its value then."""
        if len(val) < 2:
            return None
        i = val.index(min(val))
        if i == len(val) - 1 or val[i] <= 0 or not ge(val[-1], factor * val[i]) or train[-1] >= train[i]:
            return None
        return {"val_loss_min": val[i], "val_loss_min_epoch": epochs[i], "val_loss_last": val[-1],
                "val_loss_rise": round(val[-1] / val[i], 4), "train_loss_change_since": round(train[-1] - train[i], 4)}


RULE = Overfitting()
