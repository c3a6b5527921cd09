"""Nothing was learned: the model in inference mode is still at chance on its own training images.

A situation of its own, told after a few epochs: its causes are a frozen random-init base, a learning rate far
too low, a penalty that dominates the loss, or a divergence that left a dead network. Never class imbalance:
on balanced counts a model at chance predicts one class because it has nothing better to predict.
"""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, gt, lt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.series import is_finite
from analysis.view import View


class NotLearningParams(Params):
    window: int = Field(3, ge=1, description="Latest epochs that must all be near chance.")
    near_chance: float = Field(0.15, gt=0, lt=1, description="Near chance: accuracy ≤ 1/K + near_chance × (1 − 1/K).")
    tiny_update_ratio: float = Field(
        3e-4,
        gt=0,
        description="A per-step update ratio below this moves the weights too little to learn in a few epochs "
        "(DeepDiagnosis' lower bound is 1e-5 per layer; per part, a step this small is Adam at ~1e-5).",
    )
    penalty_share: float = Field(
        0.5, gt=0, lt=1, description="regularization_loss / train_eval_loss at or above this: the penalty dominates."
    )
    heavy_dropout: float = Field(
        0.8, gt=0, lt=1, description="Head dropout at or above this counts as crippling on its own."
    )
    diverged_factor: float = Field(
        2.0, gt=1, description="A training loss that rose to this multiple of its first value diverged."
    )
    start_factor: float = Field(
        5.0, gt=1, description="A data loss at or above this multiple of ln K in the first two epochs diverged."
    )
    large_update_ratio: float = Field(
        0.1, gt=0, description="DeepDiagnosis' upper bound: steps this large throw away what was learned."
    )


class NotLearning(Rule):
    """References: AutoTrainer not_converge (best accuracy below a bar) judged against chance 1/K instead of 0.7;
    DeepDiagnosis update ratio (a learning rate too small to move the weights); Keras transfer-learning guide
    (a frozen base is only as good as the weights it holds)."""

    id = "not_learning"
    reference = "AutoTrainer not_converge; DeepDiagnosis update ratio; Keras transfer-learning guide"
    causes = (
        "base_too_frozen",
        "learning_rate_too_low",
        "regularization_too_strong",
        "learning_rate_too_high",
        "learning_rate_too_high_after_unfreezing",
        "not_learning",
    )
    Params = NotLearningParams

    def min_epochs(self, p: NotLearningParams) -> int:
        return p.window

    def check(self, view: View, p: NotLearningParams) -> list[Finding] | Abstention:
        train = view.pick("train_eval_accuracy", "accuracy")
        bar = view.chance_bar(p.near_chance)
        train = view.pick("train_eval_accuracy", "accuracy")
        if not train or bar is None:
            return self.abstain_missing(
                *(["train_eval_accuracy or accuracy"] if not train else []), *(["class counts"] if bar is None else [])
            )
        if not view.near_chance(p.near_chance, p.window):
            return []
        chance = 1 / view.num_classes
        recent = train.tail(p.window)
        observed = {
            "train_accuracy_recent": recent,
            "chance": round(chance, 4),
            "near_chance_bar": round(bar, 4),
            "train_source": train.name,
        }
        cause, confidence, why, remedies = self._cause(view, p, observed)
        return [
            Finding(
                rule=self.id,
                cause=cause,
                confidence=clamp(confidence),
                summary=f"Nothing learned after {view.n} epochs: {train.name} {recent[-1]:.2f} is at chance ({chance:.2f}); {why}",
                thresholds=p.model_dump(),
                observed=observed,
                epochs=train.epochs[-p.window :],
                remedies=remedies,
            )
        ]

    def _cause(self, view: View, p: NotLearningParams, observed: dict) -> tuple[str, float, str, list]:
        spec = view.spec
        if spec.base_frozen and spec.weights is None:
            return (
                "base_too_frozen",
                0.9,
                "only the head trains, on a randomly initialised base whose features are noise.",
                R.ranked(R.use_imagenet_weights(spec), R.unfreeze_top_blocks(spec)),
            )
        diverged = self._diverged(view, p)
        if diverged:
            observed.update(diverged)
            return self._too_high(
                spec, f"the training loss diverged ({diverged['why']}) and the network never recovered."
            )
        share = view.penalty_share()
        if share is not None:
            observed["penalty_share"] = round(share, 4)
        heavy = ge(spec.dropout, p.heavy_dropout)
        if (share is not None and ge(share, p.penalty_share)) or heavy:
            what = (
                f"the weight penalty is {share:.0%} of the loss"
                if share is not None and ge(share, p.penalty_share)
                else f"dropout {spec.dropout:g} drops nearly every feature"
            )
            return (
                "regularization_too_strong",
                0.8,
                f"{what}, so fitting the data barely lowers the loss.",
                R.ranked(R.reduce_l2(spec), R.reduce_dropout(spec)),
            )
        ratio = view.update_ratio(p.window)
        if ratio is not None:
            observed["update_ratio"] = ratio
            if gt(ratio, p.large_update_ratio):
                return self._too_high(
                    spec, f"each optimizer step changes the weights by {ratio:.2g} of their norm.", ratio
                )
            if lt(ratio, p.tiny_update_ratio):
                return (
                    "learning_rate_too_low",
                    0.8,
                    f"each optimizer step changes the weights by only {ratio:.2g} of their norm (learning rate {spec.lr:g}).",
                    R.ranked(
                        R.increase_learning_rate(spec, R.step_factor(ratio, 10, 100, 10)),
                        R.switch_to_adam(spec) if spec.momentum == 0 else None,
                    ),
                )
        # A symptom without a named cause: kept low so it never passes for a diagnosis.
        return (
            "not_learning",
            0.4,
            "no recorded signal singles out a cause; check the labels and the input pipeline.",
            R.ranked(R.increase_learning_rate(spec), R.use_imagenet_weights(spec)),
        )

    @staticmethod
    def _too_high(spec, why: str, ratio: float | None = None) -> tuple[str, float, str, list]:
        lower = R.lower_learning_rate(spec, R.step_factor(ratio, 0.01, 0.1, 0.1))
        if not spec.base_frozen and spec.weights is not None:  # a pre-trained base unfrozen at a head's rate
            return (
                "learning_rate_too_high_after_unfreezing",
                0.8,
                f"{why} The unfrozen pre-trained base lost its features.",
                R.ranked(R.unfreeze_fewer_at_low_lr(spec), lower),
            )
        return ("learning_rate_too_high", 0.8, why, R.ranked(lower, R.switch_to_adam(spec)))

    @staticmethod
    def _diverged(view: View, p: NotLearningParams) -> dict | None:
        wild = view.wild_start(p.start_factor, 2)
        if wild:
            return {
                "why": f"{wild['start_loss_signal']} {wild['start_loss']:.3g} in epoch {wild['start_loss_epoch']}, "
                f"far above chance level {wild['chance_loss']:.3g}",
                **wild,
            }
        for name in ("loss", "val_loss", "train_eval_loss"):
            raw = view.series(name, finite=False)
            bad = [e for e, v in zip(raw.epochs, raw.values) if not is_finite(v)]
            if bad:
                return {"why": f"{name} non-finite at epoch {bad[0]}", "first_non_finite_epoch": bad[0]}
        loss = view.series("loss")
        if len(loss) >= 2 and loss.values[0] > 0 and ge(max(loss.values[1:]), p.diverged_factor * loss.values[0]):
            return {
                "why": f"loss rose from {loss.values[0]:.3g} to {max(loss.values[1:]):.3g}",
                "first_loss": loss.values[0],
                "max_loss": max(loss.values[1:]),
            }
        nb = view.series("nonfinite_batches")
        if sum(nb.values):
            return {"why": "non-finite batch losses", "nonfinite_batches": sum(nb.values)}
        return None


RULE = NotLearning()
