"""Remedies that change the optimiser, learning rate schedule or batch size."""

from __future__ import annotations

from analysis.findings import Remedy
from analysis.spec import round_sig
from contract.resolved import ResolvedSpec

SPEC_MONITORS = ("loss", "accuracy", "val_loss", "val_accuracy")


# Per-step update ratios of jobs that learn well sit around this (Adam, head or top blocks); a measured ratio far from
# it says by how much to move the learning rate, since the step scales with the rate. Plateau's own.
HEALTHY_UPDATE_RATIO = 3e-3


def step_factor(ratio: float | None, lo: float, hi: float, default: float) -> float:
    """How much to scale the learning rate to bring a measured update ratio to HEALTHY_UPDATE_RATIO, within [lo, hi]."""
    if not ratio or ratio <= 0:
        return default
    return min(hi, max(lo, HEALTHY_UPDATE_RATIO / ratio))


def lower_learning_rate(spec: ResolvedSpec, factor: float = 0.1) -> Remedy:
    new = round_sig(spec.lr * factor)
    return Remedy(
        id="lower_learning_rate",
        patch={"optimizer": {"learning_rate": new}},
        text=f"Lower the learning rate from {spec.lr:g} to {new:g}.",
    )


def increase_learning_rate(spec: ResolvedSpec, factor: float = 10.0) -> Remedy | None:
    cap = 0.1 if spec.optimizer == "sgd" else 1e-2  # adaptive optimisers diverge well below SGD's range
    new = round_sig(min(cap, spec.lr * factor))
    if new <= spec.lr:
        return None
    return Remedy(
        id="increase_learning_rate",
        patch={"optimizer": {"learning_rate": new}},
        text=f"Raise the learning rate from {spec.lr:g} to {new:g}.",
    )


def add_reduce_lr_on_plateau(spec: ResolvedSpec, monitor: str = "val_loss", patience: int = 3) -> Remedy | None:
    if spec.reduce_lr is not None:
        return None
    monitor = monitor if monitor in SPEC_MONITORS else "val_loss"
    min_lr = round_sig(spec.lr * 1e-3)
    return Remedy(
        id="add_reduce_lr_on_plateau",
        patch={
            "callbacks": {
                "reduce_lr_on_plateau": {"monitor": monitor, "factor": 0.1, "patience": patience, "min_lr": min_lr}
            }
        },
        text=f"Cut the learning rate ×0.1 when {monitor} stalls for {patience} epochs (down to {min_lr:g}).",
    )


def lengthen_reduce_lr_patience(spec: ResolvedSpec) -> Remedy | None:
    current = spec.reduce_lr
    if current is None:
        return None
    patience = max(5, 2 * int(current["patience"]))
    cooldown = max(2, int(current["cooldown"]))
    return Remedy(
        id="lengthen_reduce_lr_patience",
        patch={"callbacks": {"reduce_lr_on_plateau": {"patience": patience, "cooldown": cooldown}}},
        text=f"Let ReduceLROnPlateau wait {patience} epochs (cooldown {cooldown}) before cutting, so warm-up "
        "noise does not cut the rate while the model still improves.",
    )


def raise_min_lr(spec: ResolvedSpec) -> Remedy | None:
    target = round_sig(spec.lr * 0.01)
    if spec.min_lr >= target:
        return None
    return Remedy(
        id="raise_min_lr",
        patch={"callbacks": {"reduce_lr_on_plateau": {"min_lr": target}}},
        text=f"Keep the learning rate from falling below {target:g} (1% of the initial rate); further cuts stopped helping.",
    )


def increase_batch_size(spec: ResolvedSpec) -> Remedy | None:
    bs = spec.batch_size
    new = 32 if bs < 32 else min(256, bs * 2)
    if new <= bs:
        return None
    return Remedy(
        id="increase_batch_size",
        patch={"batch_size": new},
        text=f"Raise the batch size from {bs} to {new} for less noisy gradients and BatchNorm statistics.",
    )


def switch_to_adam(spec: ResolvedSpec) -> Remedy | None:
    if spec.optimizer in ("adam", "adamw"):
        return None
    lr = round_sig(min(spec.lr, 1e-3))
    return Remedy(
        id="switch_to_adam",
        patch={"optimizer": {"name": "adam", "learning_rate": lr, "momentum": None}},
        text=f"Switch from {spec.optimizer} to Adam at learning rate {lr:g}.",
    )


MAX_EPOCHS_FACTOR = 2  # one round at most doubles the epochs: a lineage's cost stays predictable


def train_longer(spec: ResolvedSpec) -> Remedy:
    new = spec.epochs * MAX_EPOCHS_FACTOR
    return Remedy(
        id="train_longer",
        patch={"epochs": new},
        text=f"Train for {new} epochs instead of {spec.epochs}: validation was still improving when the run ended.",
    )
