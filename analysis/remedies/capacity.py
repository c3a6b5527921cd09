"""Remedies that change which part of Inception-V3 trains, and from which weights."""

from __future__ import annotations

from analysis.findings import Remedy
from analysis.spec import fewer_trainable, round_sig
from contract.resolved import ResolvedSpec

TOP_BLOCKS = "mixed8"
FINE_TUNE_LR = 1e-5  # Keras transfer-learning guide: fine-tune an unfrozen base at a low rate


def fine_tune_lr(spec: ResolvedSpec) -> float:
    return round_sig(min(spec.lr * 0.1, FINE_TUNE_LR))


def unfreeze_top_blocks(spec: ResolvedSpec) -> Remedy | None:
    if not spec.base_frozen:
        return None
    lr = fine_tune_lr(spec)
    return Remedy(
        id="unfreeze_top_blocks",
        patch={"model": {"trainable": TOP_BLOCKS}, "optimizer": {"learning_rate": lr}},
        text=f"Unfreeze the top Inception blocks (from {TOP_BLOCKS} on) and fine-tune them at learning rate {lr:g}.",
    )


def use_imagenet_weights(spec: ResolvedSpec) -> Remedy | None:
    if spec.weights == "imagenet":
        return None
    return Remedy(
        id="use_imagenet_weights",
        patch={"model": {"weights": "imagenet"}},
        text="Start the base from ImageNet weights; a frozen base is only as good as the features it was trained for.",
    )


def freeze_more_layers(spec: ResolvedSpec) -> Remedy | None:
    fewer = fewer_trainable(spec.trainable)
    if fewer is None:
        return None
    return Remedy(
        id="freeze_more_layers",
        patch={"model": {"trainable": fewer}},
        text=f"Train fewer base layers (trainable {spec.trainable!r} → {fewer!r}) so the model has less capacity to memorise.",
    )


def unfreeze_fewer_at_low_lr(spec: ResolvedSpec) -> Remedy | None:
    fewer = fewer_trainable(spec.trainable)
    if fewer is None:
        return None
    lr = fine_tune_lr(spec)
    return Remedy(
        id="unfreeze_fewer_at_low_lr",
        patch={"model": {"trainable": fewer}, "optimizer": {"learning_rate": lr}},
        text=f"Fine-tune fewer base layers ({fewer!r}) at learning rate {lr:g}, as the Keras transfer-learning guide does.",
    )
