"""Premature learning-rate cuts: ReduceLROnPlateau cut the rate during warm-up, and learning stopped after it.

A cut by the user's own ReduceLROnPlateau is expected: a concave learning curve keeps rising after it. Only the
evidence makes one premature: accuracy rising significantly before the cut (Theil–Sen slope, 95 % interval above
zero), training accuracy still short of converged, and after the cut either no significant rise (interval
reaching zero, and no gain beyond the binomial noise of the validation set) or an abrupt slowdown of a curve
that was not decelerating before it.
"""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, lt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.stats import significantly_above, trend
from analysis.view import View


class PrematureLrCutParams(Params):
    warmup_fraction: float = Field(
        0.3, gt=0, lt=1, description="A cut within this fraction of the planned epochs is early…"
    )
    warmup_epochs: int = Field(3, ge=1, description="…or within this many epochs, whichever is later.")
    slowdown: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Mean accuracy gain per epoch after the cut below this fraction of the gain before it.",
    )
    converged: float = Field(
        0.95, gt=0, le=1, description="Training accuracy at or above this has nothing left to learn: no finding."
    )
    after: int = Field(2, ge=1, description="Epochs after the cut needed to judge the slowdown.")
    decelerating: float = Field(
        0.75,
        gt=0,
        lt=1,
        description="Gains before the cut already shrinking (the last below this fraction of the first) make a "
        "concave curve: its cut is premature only if learning then stopped.",
    )
    judge_epochs: int = Field(
        30, ge=3, description="The trends before and after the cut are judged on at most this many epochs each."
    )
    min_gain: float = Field(
        0.02,
        ge=0,
        description="A gain after the cut beyond the validation set's binomial noise, and at least this, is learning.",
    )


class PrematureLrCut(Rule):
    """References: Keras ReduceLROnPlateau (patience 10, cooldown 0 by default: a short patience cuts on noise);
    AutoTrainer slow convergence (largest gain per epoch) for the slowdown after the cut."""

    id = "premature_lr_cut"
    reference = "Keras ReduceLROnPlateau (keras/src/callbacks/reduce_lr_on_plateau.py); AutoTrainer slow convergence"
    causes = ("premature_lr_cut",)
    Params = PrematureLrCutParams
    judges_progress = False  # quiet without a cut: says nothing about whether the job is healthy

    def min_epochs(self, p: PrematureLrCutParams) -> int:
        return 2 + p.after

    def check(self, view: View, p: PrematureLrCutParams) -> list[Finding] | Abstention:
        if view.spec.reduce_lr is None:
            return []  # only ReduceLROnPlateau cuts on its own judgement; a schedule is the user's choice
        if not view.has("learning_rate") and not view.context.lr_reductions:
            return self.abstain_missing("learning_rate")
        cuts = view.lr_cuts()
        if not cuts:
            return []
        acc = view.pick("val_accuracy", "train_eval_accuracy")
        if not acc:
            return self.abstain_missing("val_accuracy or train_eval_accuracy")
        planned = view.context.planned_epochs or view.n
        limit = max(p.warmup_epochs, int(p.warmup_fraction * planned))
        first = cuts[0]
        if first > limit or first not in acc.epochs:
            return []
        i = acc.epochs.index(first)  # the first epoch run at the cut rate
        before, after = acc.values[:i], acc.values[i - 1 :]
        if len(before) < 2 or len(after) < p.after + 1:
            return []
        rate_before = (before[-1] - before[0]) / (len(before) - 1)
        rate_after = (after[-1] - after[0]) / (len(after) - 1)
        train = view.pick("train_eval_accuracy", "accuracy")
        if rate_before <= 0 or not lt(rate_after, p.slowdown * rate_before) or (train and ge(train.last, p.converged)):
            return []
        n = view.sample_size(acc.name)
        # rising before the cut beyond noise: a Theil–Sen interval above zero, or with two epochs a binomial gain
        recent = before[-p.judge_epochs :]  # Theil–Sen is O(n²): judge the epochs around the cut, not all of them
        rising_before = trend(recent).rising if len(recent) >= 3 else significantly_above(recent[-1], recent[0], n)
        at_cut = after[1 : 1 + p.judge_epochs]  # the epochs trained at the cut rate
        after_trend = trend(at_cut)
        gained_after = len(at_cut) > 1 and significantly_above(max(at_cut[1:]), at_cut[0], n, floor=p.min_gain)
        stalled_after = not ((after_trend is not None and after_trend.rising) or gained_after)
        gains = [b - a for a, b in zip(before, before[1:])]
        decelerating = len(gains) >= 2 and gains[-1] < p.decelerating * gains[0]
        if not rising_before or (decelerating and not stalled_after):
            return []  # a concave curve that keeps learning after the cut: the cut was the user's plan working
        spec = view.spec
        rlrop = spec.reduce_lr or {}
        confidence = 0.65 + (0.1 if int(rlrop.get("patience", 10)) <= 2 else 0.0)
        return [
            Finding(
                rule=self.id,
                cause="premature_lr_cut",
                confidence=clamp(confidence),
                summary=f"The learning rate was cut at epoch {first}, during warm-up (≤ epoch {limit} of {planned}), while "
                f"{acc.name} was still rising {rate_before:+.3f}/epoch; after the cut it rose {rate_after:+.3f}/epoch.",
                thresholds=p.model_dump(),
                observed={
                    "first_cut_epoch": first,
                    "lr_cuts": cuts,
                    "gain_per_epoch_before": round(rate_before, 4),
                    "gain_per_epoch_after": round(rate_after, 4),
                    "warmup_limit_epoch": limit,
                    "reduce_lr_patience": rlrop.get("patience"),
                    "trend_after_cut": after_trend and [round(after_trend.low, 4), round(after_trend.high, 4)],
                    "val_images": n,
                    "stalled_after_cut": stalled_after,
                    "decelerating_before_cut": decelerating,
                },
                epochs=[e for e in acc.epochs if e >= acc.epochs[max(0, i - 1)]],
                remedies=R.ranked(R.lengthen_reduce_lr_patience(spec)),
            )
        ]


RULE = PrematureLrCut()
