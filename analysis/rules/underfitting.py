"""Underfitting: accuracy is low and has stopped rising; each sub-cause is its own finding."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, gt, le, lt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.series import Series, max_gain
from analysis.stats import significantly_above, wilson
from analysis.view import View


class UnderfittingParams(Params):
    low_accuracy: float = Field(
        0.7, gt=0, le=1, description="AutoTrainer not_converge: best accuracy below this is low, when K is unknown."
    )
    low_fraction: float = Field(
        0.55,
        gt=0,
        lt=1,
        description="With K classes, low means below 1/K + low_fraction × (1 − 1/K): 0.7 for 3 classes, 0.66 for "
        "4, 0.6 for 10 (AutoTrainer's fixed 0.7 ignores the number of classes).",
    )
    fine_tune_lr: float = Field(
        1e-4,
        gt=0,
        description="An unfrozen pre-trained base at or below this rate is a fine-tune at the rate the Keras guide "
        "recommends (~1e-5): small steps are intended, so only a whole run without progress calls it too low.",
    )
    min_gain: float = Field(
        0.01, gt=0, description="AutoTrainer slow convergence: largest epoch-to-epoch accuracy gain below this."
    )
    window: int = Field(5, ge=1, description="Recent epochs over which a stall (gains below min_gain) is judged.")
    update_ratio_low: float = Field(
        3e-4,
        gt=0,
        description="A per-step ‖ΔW‖/‖W‖ below this means the learning rate is too low "
        "(DeepDiagnosis' per-layer bound is 1e-5).",
    )
    near_chance: float = Field(
        0.15, gt=0, lt=1, description="Training accuracy still near chance is the not_learning rule's case."
    )
    dominant_share: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="A penalty this share of the loss names the cause even while accuracy still creeps up.",
    )
    penalty_share: float = Field(
        0.3, gt=0, lt=1, description="regularization_loss / train_eval_loss at or above this counts as strong."
    )
    strong_dropout: float = Field(0.5, gt=0, lt=1, description="Dropout at or above this counts as strong.")
    strong_l2: float = Field(1e-3, gt=0, description="L2 at or above this counts as strong.")
    max_gap: float = Field(0.05, ge=0, description="Train - val accuracy at or below this is 'almost no gap'.")
    tiny_lr: float = Field(1e-7, gt=0, description="LR floor assumed when ReduceLROnPlateau's min_lr is 0.")


@dataclass
class Curves:
    train: Series
    val: Series
    best_train: float
    best_val: float
    gap: float
    stalled: bool  # no gain of min_gain over the last `window` epochs, train and val
    slow_whole: bool  # AutoTrainer sc_accuracy: never a gain of min_gain, train and val
    epochs: list[int]


class Underfitting(Rule):
    """Sub-causes: learning_rate_too_low, base_too_frozen, regularization_too_strong, lr_floor_reached.

    References: AutoTrainer (utils/monitor.py) not_converge (0.7) and slow convergence (largest gain < 0.01);
    DeepDiagnosis (callback/callbacks.py) update ratio range [1e-5, 0.1]; Keras ReduceLROnPlateau min_lr;
    Keras transfer-learning guide (unfreeze top blocks at ~1e-5).
    """

    id = "underfitting"
    reference = "AutoTrainer not_converge/slow convergence; DeepDiagnosis update ratio; Keras ReduceLROnPlateau"
    causes = ("learning_rate_too_low", "base_too_frozen", "regularization_too_strong", "lr_floor_reached")
    Params = UnderfittingParams

    def min_epochs(self, p: UnderfittingParams) -> int:
        return p.window + 1

    def check(self, view: View, p: UnderfittingParams) -> list[Finding] | Abstention:
        train, val = view.pick("train_eval_accuracy", "accuracy"), view.series("val_accuracy")
        if not train or not val:
            return self.abstain_missing(
                *(["train_eval_accuracy or accuracy"] if not train else []), *(["val_accuracy"] if not val else [])
            )
        p = p.model_copy(update={"low_accuracy": view.low_accuracy_bar(p.low_fraction, p.low_accuracy)})
        c = self._curves(view, train, val, p)
        unsuitable = self._base_unsuitable(view, p, c)
        if unsuitable is not None:
            return [unsuitable]
        if view.near_chance(p.near_chance, 3):
            return []  # at chance nothing was learned at all: not_learning tells those causes apart
        if not c.stalled:
            # still creeping up, but a measured evidence explains why so slowly: a tiny step, or a dominant penalty
            found = [
                self._lr_too_low(view, p, c, measured_only=True),
                self._regularization(view, p, c, dominant_only=True),
            ]
            return [f for f in found if f is not None]
        floor = self._lr_floor(view, p, c)
        found = [floor, self._base_frozen(view, p, c), self._regularization(view, p, c)]
        if floor is None:  # at the floor, the floor is the better explanation of a too-small LR
            found.append(self._lr_too_low(view, p, c))
        return [f for f in found if f is not None]

    def _curves(self, view: View, train: Series, val: Series, p: UnderfittingParams) -> Curves:
        ep, ta, va = view.paired(train, val)
        k = p.window + 1
        return Curves(
            train=train,
            val=val,
            best_train=max(train.values),
            best_val=max(val.values),
            gap=(ta[-1] - va[-1]) if ep else 0.0,
            stalled=lt(max_gain(train.tail(k)), view.resolution(train.name, p.min_gain))
            and lt(max_gain(val.tail(k)), view.resolution(val.name, p.min_gain)),
            slow_whole=lt(max_gain(train.values), view.resolution(train.name, p.min_gain))
            and lt(max_gain(val.values), view.resolution(val.name, p.min_gain)),
            epochs=val.epochs[-k:],
        )

    def _finding(
        self,
        cause: str,
        confidence: float,
        summary: str,
        p: UnderfittingParams,
        c: Curves,
        observed: dict,
        remedies: list,
    ) -> Finding:
        base = {
            "best_train_accuracy": c.best_train,
            "best_val_accuracy": c.best_val,
            "accuracy_gap": round(c.gap, 4),
            "train_source": c.train.name,
            "stalled_over_window": c.stalled,
        }
        return Finding(
            rule=self.id,
            cause=cause,
            confidence=clamp(confidence),
            summary=summary,
            thresholds=p.model_dump(),
            observed={**base, **observed},
            epochs=c.epochs,
            remedies=remedies,
        )

    def _lr_too_low(self, view: View, p: UnderfittingParams, c: Curves, measured_only: bool = False) -> Finding | None:
        if not (lt(c.best_train, p.low_accuracy) or lt(c.best_val, p.low_accuracy)):
            return None
        spec = view.spec
        probe = view.probes.get("lr_range")
        if probe is not None and probe.suggested_lr <= 3 * spec.lr:
            return None  # the range test measured this rate as usable
        ratio = view.update_ratio(p.window)
        tiny = ratio is not None and lt(ratio, p.update_ratio_low)
        fine_tune = not spec.base_frozen and spec.weights is not None and spec.lr <= p.fine_tune_lr
        if fine_tune and probe is None and (measured_only or not (c.slow_whole and c.stalled)):
            return None  # the small steps of an intended fine-tune are not evidence by themselves
        if measured_only and not tiny:
            return None
        # a measured update ratio in the healthy range clears the learning rate, however slow the curve
        if probe is None and not tiny and (ratio is not None or not c.slow_whole):
            return None
        why = [f"the range test finds the loss falls fastest near {probe.suggested_lr:.2g}"] if probe else []
        why += [f"update ratio {ratio:.2g} < {p.update_ratio_low:g}"] if tiny else []
        why += [f"no epoch ever gained {p.min_gain:g} accuracy"] if c.slow_whole else []
        return self._finding(
            "learning_rate_too_low",
            0.85 if probe else ((0.7 + (0.1 if c.slow_whole else 0.0)) if tiny else 0.45),
            f"Learning rate {spec.lr:g} looks too low: {' and '.join(why)}, best accuracy {max(c.best_train, c.best_val):.2f}.",
            p,
            c,
            {
                "update_ratio": ratio,
                "slow_whole_run": c.slow_whole,
                "learning_rate": spec.lr,
                **({"lr_range": probe.model_dump()} if probe else {}),
            },
            R.ranked(
                R.increase_learning_rate(
                    spec, probe.suggested_lr / spec.lr if probe else R.step_factor(ratio, 10, 100, 10)
                ),
                R.switch_to_adam(spec) if spec.momentum == 0 else None,
            ),
        )

    def _base_unsuitable(self, view: View, p: UnderfittingParams, c: Curves) -> Finding | None:
        """A linear probe of the frozen base's features within binomial noise of chance: the features do not
        separate these classes, so a head alone cannot learn them.

        The probe is scored against the training labels: with a fraction η of them wrong (the label check's noise
        rate) even perfect features score about 1 − η. When that ceiling is itself within noise of chance, a
        probe near chance says nothing about the features, and no finding is made."""
        probe, spec = view.probes.get("linear_probe"), view.spec
        k = view.num_classes
        chance = probe.chance if probe is not None and probe.chance is not None else (1 / k if k else None)
        if probe is None or chance is None or not spec.base_frozen:
            return None
        if significantly_above(probe.accuracy, chance, probe.images, floor=p.min_gain):
            return None
        if k and chance > 1 / k + p.min_gain:
            # imbalanced training labels: always answering the largest class already scores `chance`, so an
            # accuracy near it cannot tell uninformative features from a linear model that follows the counts
            return None
        check = view.probes.get("label_check")
        if check is not None and not significantly_above(1 - check.noise_rate, chance, probe.images, floor=p.min_gain):
            return None  # the labels leave the probe no room above chance: it cannot judge the features
        # The job's own head learns on these same frozen features: where it beats the probe's whole interval, on
        # the training subset or on held-out images, the features do separate the classes (the probe's score is the
        # labels' or the linear model's limit, not theirs)
        interval = wilson(probe.accuracy * probe.images, probe.images) if probe.images else None
        for name, best in ((c.train.name, c.best_train), (c.val.name, c.best_val)):
            n = view.sample_size(name)
            own = wilson(best * n, n) if n and best is not None else None
            if interval is not None and own is not None and gt(own[0], interval[1]):
                return None
        return self._finding(
            "base_too_frozen",
            0.9,
            f"A linear probe of the frozen base's features scores {probe.accuracy:.2f}, chance level ({chance:.2f}): "
            "the base is unsuitable for these classes and a head alone cannot learn them.",
            p,
            c,
            {"trainable": spec.trainable, "weights": spec.weights, "linear_probe": probe.model_dump()},
            R.ranked(R.use_imagenet_weights(spec), R.unfreeze_top_blocks(spec)),
        )

    def _base_frozen(self, view: View, p: UnderfittingParams, c: Curves) -> Finding | None:
        spec = view.spec
        if not (spec.base_frozen and lt(c.best_train, p.low_accuracy) and lt(c.best_val, p.low_accuracy)):
            return None
        ratio = view.update_ratio(p.window)
        if spec.weights is not None and ratio is not None and lt(ratio, p.update_ratio_low):
            return None  # the head barely moves: the learning rate, not the frozen features, holds it back
        random_base = spec.weights is None
        confidence = 0.6 + (0.15 if random_base else 0.0) + (0.05 if le(abs(c.gap), p.max_gap) else 0.0)
        return self._finding(
            "base_too_frozen",
            confidence,
            f"Only the head trains and both accuracies stay low (train {c.best_train:.2f}, val {c.best_val:.2f})"
            + (
                " on a randomly initialised base."
                if random_base
                else "; the frozen features do not separate these classes."
            ),
            p,
            c,
            {"trainable": spec.trainable, "weights": spec.weights},
            R.ranked(R.use_imagenet_weights(spec), R.unfreeze_top_blocks(spec)),
        )

    def _regularization(
        self, view: View, p: UnderfittingParams, c: Curves, dominant_only: bool = False
    ) -> Finding | None:
        spec = view.spec
        strong_dropout, strong_l2 = ge(spec.dropout, p.strong_dropout), ge(spec.l2, p.strong_l2)
        share = view.penalty_share()
        if dominant_only:  # without a stall only a penalty that is most of the loss is evidence enough
            strong_dropout, strong_l2 = False, share is not None and ge(share, p.dominant_share)
        strong_l2 = strong_l2 or (share is not None and ge(share, p.penalty_share))
        # a penalty that is most of the loss names the cause whatever the gap: the optimiser mostly shrinks weights
        small_gap = le(c.gap, p.max_gap) or (dominant_only and strong_l2)
        if not ((strong_dropout or strong_l2) and lt(c.best_train, p.low_accuracy) and small_gap):
            return None
        confidence = (
            0.65
            + (0.1 if strong_dropout and strong_l2 else 0.0)
            + (0.1 if c.train.name == "train_eval_accuracy" else 0.0)
        )
        return self._finding(
            "regularization_too_strong",
            confidence,
            f"Regularisation (dropout {spec.dropout:g}, L2 {spec.l2:g}) keeps training accuracy at {c.best_train:.2f} "
            f"with almost no train/val gap ({c.gap:+.2f}).",
            p,
            c,
            {"dropout": spec.dropout, "l2": spec.l2, "penalty_share": share},
            R.ranked(R.reduce_dropout(spec) if strong_dropout else None, R.reduce_l2(spec) if strong_l2 else None),
        )

    def _lr_floor(self, view: View, p: UnderfittingParams, c: Curves) -> Finding | None:
        lr, cuts = view.series("learning_rate"), view.lr_cuts()
        if not lr or not cuts:
            return None
        spec = view.spec
        floor = max(spec.min_lr, p.tiny_lr)
        if lr.last > floor * (1 + 1e-4):  # float32 round-trip tolerance
            return None
        low = lt(c.best_train, p.low_accuracy) or lt(c.best_val, p.low_accuracy)
        return self._finding(
            "lr_floor_reached",
            0.55 + (0.1 if low else 0.0),
            f"The learning rate reached its floor ({lr.last:.3g}) after {len(cuts)} cut(s) and accuracy is still flat.",
            p,
            c,
            {"learning_rate": lr.last, "floor": floor, "lr_cuts": cuts},
            R.ranked(R.unfreeze_top_blocks(spec) if low else None, R.raise_min_lr(spec), R.add_early_stopping(spec)),
        )


RULE = Underfitting()
