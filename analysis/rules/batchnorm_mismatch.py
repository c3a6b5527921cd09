"""BatchNorm mismatch: after unfreezing, validation collapses while training looks fine."""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, le
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.series import Series
from analysis.view import View


class BatchnormMismatchParams(Params):
    chance_margin: float = Field(0.05, ge=0, description="Accuracy within this of 1/K counts as chance.")
    val_loss_factor: float = Field(10.0, gt=1, description="val_loss at least this multiple of its minimum has exploded…")
    val_loss_abs: float = Field(100.0, gt=0, description="…or at least this (cross-entropy far beyond any real prediction).")
    train_margin: float = Field(0.2, gt=0, description="Training-mode accuracy at least chance + this looks fine.")


class BatchnormMismatch(Rule):
    """With the base unfrozen, BatchNorm layers that train on small batches can leave inference-mode
    statistics that no longer match: training-mode accuracy looks fine, inference-mode (validation, and the
    inference-mode pass on training data) collapses to chance with exploding loss.

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
            return self.abstain_missing(*([] if val_loss or val_acc else ["val_loss or val_accuracy"]),
                                        *([] if acc or loss else ["accuracy or loss"]))
        spec = view.spec
        if spec.base_frozen:
            return []  # a frozen base keeps BatchNorm in inference mode; nothing to mismatch
        k = view.num_classes
        chance = 1 / k if k else None
        observed: dict = {"trainable": spec.trainable, "chance": chance}

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
        if not (train_ok and (exploded or at_chance)):
            return []
        honest = view.series("train_eval_accuracy")
        eval_collapsed = bool(honest and chance is not None and le(honest.last, chance + p.chance_margin))
        observed.update(val_loss_exploded=exploded, val_accuracy_at_chance=at_chance,
                        train_eval_at_chance=eval_collapsed)
        if honest:
            observed["train_eval_accuracy"] = honest.last
        confidence = 0.6 + (0.25 if eval_collapsed else 0.0) + (0.2 if exploded and at_chance else 0.0)
        why = [f"val_loss rose to {val_loss.last:.3g} (minimum {observed['val_loss_min']:.3g})"] if exploded else []
        why += [f"val accuracy {val_acc.last:.2f} is at chance ({chance:.2f})"] if at_chance else []
        why += ["the same model in inference mode is at chance on training images too"] if eval_collapsed else []
        return [Finding(
            rule=self.id, cause="batchnorm_mismatch", confidence=clamp(confidence),
            summary=f"With the base unfrozen ({spec.trainable!r}) training looks fine but {'; '.join(why)}: "
                    f"BatchNorm statistics no longer match inference.",
            thresholds=p.model_dump(), observed=observed,
            epochs=self._collapse_epochs(val_loss, val_acc, chance, p),
            remedies=R.ranked(R.unfreeze_fewer_at_low_lr(spec), R.increase_batch_size(spec), R.freeze_more_layers(spec)),
        )]

    @staticmethod
    def _exploded(val_loss: Series, p: BatchnormMismatchParams, observed: dict) -> bool:
        if not val_loss:
            return False
        lo = min(val_loss.values)
        observed.update(val_loss_last=val_loss.last, val_loss_min=lo)
        return ge(val_loss.last, p.val_loss_abs) or (lo > 0 and ge(val_loss.last, p.val_loss_factor * lo))

    @staticmethod
    def _collapse_epochs(val_loss: Series, val_acc: Series, chance: float | None, p: BatchnormMismatchParams) -> list[int]:
        """The trailing epochs in collapse."""
        lo = min(val_loss.values) if val_loss else None
        bad: list[int] = []
        if val_loss:
            bad = [e for e, v in zip(val_loss.epochs, val_loss.values) if ge(v, p.val_loss_abs) or (lo and ge(v, p.val_loss_factor * lo))]
        if not bad and val_acc and chance is not None:
            bad = [e for e, v in zip(val_acc.epochs, val_acc.values) if le(v, chance + p.chance_margin)]
        return bad


RULE = BatchnormMismatch()
