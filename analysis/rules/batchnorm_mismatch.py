"""BatchNorm mismatch: after unfreezing, validation collapses while training looks fine."""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, le
from analysis.findings import Abstention, Finding, Remedy, clamp
from analysis.rule import Params, Rule
from analysis.series import Series
from analysis.view import View
from contract.resolved import ResolvedSpec


class BatchnormMismatchParams(Params):
    chance_margin: float = Field(0.05, ge=0, description="Accuracy within this of 1/K counts as chance.")
    val_loss_factor: float = Field(
        10.0, gt=1, description="val_loss at least this multiple of its minimum has exploded…"
    )
    val_loss_abs: float = Field(
        100.0, gt=0, description="…or at least this (cross-entropy far beyond any real prediction)."
    )
    train_margin: float = Field(0.2, gt=0, description="Training-mode accuracy at least chance + this looks fine.")
    eval_gap: float = Field(
        0.3,
        gt=0,
        description="Keras accuracy at least this above inference-mode accuracy on the "
        "same training images is BatchNorm's signature.",
    )


class BatchnormMismatch(Rule):
    """With the base unfrozen and its BatchNorm layers training (`model.batchnorm` "train", or "auto" on a
    random-init base), small batches can leave inference-mode statistics that no longer match: training-mode
    accuracy looks fine, inference-mode (validation, and the inference-mode pass on training data) falls far
    below it, down to chance with exploding loss. Frozen BatchNorm runs in inference mode: nothing to mismatch.

    Reference: Keras transfer-learning guide (keras-io guides/transfer_learning.py): keep BatchNorm in
    inference mode, recompile after changing `trainable`, fine-tune at a low learning rate (~1e-5).
    """

    id = "batchnorm_mismatch"
    reference = "Keras transfer-learning guide (guides/transfer_learning.py)"
    causes = ("batchnorm_mismatch",)
    Params = BatchnormMismatchParams

    def check(self, view: View, p: BatchnormMismatchParams) -> list[Finding] | Abstention:
        val_loss, val_acc = view.series("val_loss"), view.series("val_accuracy")
        acc, loss = view.series("accuracy"), view.series("loss")
        if not (val_loss or val_acc) or not (acc or loss):
            return self.abstain_missing(
                *([] if val_loss or val_acc else ["val_loss or val_accuracy"]),
                *([] if acc or loss else ["accuracy or loss"]),
            )
        spec = view.spec
        if spec.base_frozen or spec.batchnorm == "frozen":
            return []  # BatchNorm in inference mode while training: its statistics are the ones it is judged with
        k = view.num_classes
        chance = 1 / k if k else None
        observed: dict = {"trainable": spec.trainable, "batchnorm": spec.batchnorm, "chance": chance}

        exploded = self._exploded(val_loss, p, observed)
        at_chance = bool(val_acc and chance is not None and le(val_acc.last, chance + p.chance_margin))
        if val_acc:
            observed["val_accuracy"] = val_acc.last
        if acc:
            train_ok = ge(acc.last, (chance or 0.3) + p.train_margin)
            observed["train_accuracy"] = acc.last
        else:
            train_ok = loss.last <= loss.values[0]
            observed["train_loss"] = loss.last
        honest = view.series("train_eval_accuracy")
        # training mode (batch statistics) far ahead of inference mode on the same images
        eval_gap = bool(honest and acc and ge(acc.last - honest.last, p.eval_gap))
        if not (train_ok and (exploded or at_chance or eval_gap)):
            return []
        eval_collapsed = bool(honest and chance is not None and le(honest.last, chance + p.chance_margin))
        observed.update(
            val_loss_exploded=exploded,
            val_accuracy_at_chance=at_chance,
            train_eval_at_chance=eval_collapsed,
            train_eval_gap=eval_gap,
        )
        if honest:
            observed["train_eval_accuracy"] = honest.last
        confidence = 0.6 + (0.25 if eval_collapsed or eval_gap else 0.0) + (0.2 if exploded and at_chance else 0.0)
        why = [f"val_loss rose to {val_loss.last:.3g} (minimum {observed['val_loss_min']:.3g})"] if exploded else []
        why += [f"val accuracy {val_acc.last:.2f} is at chance ({chance:.2f})"] if at_chance else []
        if eval_collapsed:
            why += ["the same model in inference mode is at chance on training images too"]
        elif eval_gap:
            why += [
                f"the same model in inference mode scores {honest.last:.2f} on training images it fits at "
                f"{acc.last:.2f} in training mode"
            ]
        return [
            Finding(
                rule=self.id,
                cause="batchnorm_mismatch",
                confidence=clamp(confidence),
                summary=f"With the base unfrozen ({spec.trainable!r}) training looks fine but {'; '.join(why)}: "
                f"BatchNorm statistics no longer match inference.",
                thresholds=p.model_dump(),
                observed=observed,
                epochs=self._collapse_epochs(val_loss, val_acc, chance, p) or self._gap_epochs(acc, honest, p),
                remedies=R.ranked(
                    _freeze_batchnorm(spec),
                    R.unfreeze_fewer_at_low_lr(spec),
                    R.increase_batch_size(spec),
                    R.freeze_more_layers(spec),
                ),
            )
        ]

    @staticmethod
    def _exploded(val_loss: Series, p: BatchnormMismatchParams, observed: dict) -> bool:
        if not val_loss:
            return False
        lo = min(val_loss.values)
        observed.update(val_loss_last=val_loss.last, val_loss_min=lo)
        return ge(val_loss.last, p.val_loss_abs) or (lo > 0 and ge(val_loss.last, p.val_loss_factor * lo))

    @staticmethod
    def _gap_epochs(acc: Series, honest: Series, p: BatchnormMismatchParams) -> list[int]:
        if not (acc and honest):
            return []
        evals = dict(zip(honest.epochs, honest.values))
        return [e for e, a in zip(acc.epochs, acc.values) if e in evals and ge(a - evals[e], p.eval_gap)]

    @staticmethod
    def _collapse_epochs(
        val_loss: Series, val_acc: Series, chance: float | None, p: BatchnormMismatchParams
    ) -> list[int]:
        """The trailing epochs in collapse."""
        lo = min(val_loss.values) if val_loss else None
        bad: list[int] = []
        if val_loss:
            bad = [
                e
                for e, v in zip(val_loss.epochs, val_loss.values)
                if ge(v, p.val_loss_abs) or (lo and ge(v, p.val_loss_factor * lo))
            ]
        if not bad and val_acc and chance is not None:
            bad = [e for e, v in zip(val_acc.epochs, val_acc.values) if le(v, chance + p.chance_margin)]
        return bad


def _freeze_batchnorm(spec: ResolvedSpec) -> Remedy | None:
    """Pre-trained statistics are worth keeping; a random-init base has none, so there it does not apply."""
    if spec.weights is None:
        return None
    return Remedy(
        id="freeze_batchnorm",
        patch={"model": {"batchnorm": "frozen"}},
        text="Keep the base's BatchNorm layers in inference mode with their pre-trained statistics "
        '(model.batchnorm "frozen"); the convolutions still fine-tune.',
    )


RULE = BatchnormMismatch()
