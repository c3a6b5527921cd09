"""Remedies that change how strongly the model is regularised."""

from __future__ import annotations

from analysis.findings import Remedy
from analysis.spec import round_sig
from contract.resolved import ResolvedSpec

# A mild, label-preserving set for natural images (ImageDataGenerator option names).
BASE_AUGMENTATION = {"horizontal_flip": True, "rotation_range": 15.0, "zoom_range": 0.1}
AUGMENTATION_CAPS = {"rotation_range": 45.0, "zoom_range": 0.3, "width_shift_range": 0.3, "height_shift_range": 0.3}


def augment(spec: ResolvedSpec) -> Remedy | None:
    current = spec.augmentation
    if current is None:
        return Remedy(
            id="add_augmentation",
            patch={"regularization": {"augmentation": dict(BASE_AUGMENTATION)}},
            text="Add data augmentation (horizontal flips, ±15° rotation, 10% zoom) so the model sees new views of each image.",
        )
    stronger: dict = {} if current.get("horizontal_flip") else {"horizontal_flip": True}
    for key, cap in AUGMENTATION_CAPS.items():
        now = float(current.get(key) or 0.0)
        new = min(cap, max(now * 2, BASE_AUGMENTATION.get(key, 0.1)))
        if new > now:
            stronger[key] = round_sig(new)
    if not stronger:
        return None
    return Remedy(
        id="stronger_augmentation",
        patch={"regularization": {"augmentation": stronger}},
        text=f"Strengthen data augmentation ({', '.join(f'{k}={v}' for k, v in stronger.items())}).",
    )


def increase_dropout(spec: ResolvedSpec) -> Remedy | None:
    d = spec.dropout
    new = 0.5 if d < 0.5 else round(min(0.7, d + 0.1), 2)
    if new <= d:
        return None
    patch = {"dropout": new}
    if spec.dense_dropout is not None and spec.dense_dropout < new:
        patch["dense_dropout"] = new
    return Remedy(
        id="increase_dropout", patch={"regularization": patch}, text=f"Raise head dropout from {d:g} to {new:g}."
    )


def reduce_dropout(spec: ResolvedSpec) -> Remedy | None:
    d = spec.dropout
    if d <= 0.2:
        return None
    new = round(max(0.2, d - 0.3), 2)
    patch = {"dropout": new}
    if spec.dense_dropout is not None and spec.dense_dropout > new:
        patch["dense_dropout"] = new
    return Remedy(
        id="reduce_dropout",
        patch={"regularization": patch},
        text=f"Lower head dropout from {d:g} to {new:g}; the model cannot fit the training data as it is.",
    )


def add_l2(spec: ResolvedSpec) -> Remedy | None:
    l2 = spec.l2
    if l2 >= 1e-2:
        return None
    new = 1e-4 if l2 == 0 else round_sig(min(1e-2, l2 * 10))
    return Remedy(
        id="add_l2",
        patch={"regularization": {"l2": new}},
        text=f"Raise the L2 penalty on the head's Dense layers from {l2:g} to {new:g}.",
    )


def reduce_l2(spec: ResolvedSpec) -> Remedy | None:
    l2 = spec.l2
    if l2 <= 0:
        return None
    new = round_sig(l2 * 0.1) if l2 * 0.1 >= 1e-6 else 0.0
    return Remedy(
        id="reduce_l2", patch={"regularization": {"l2": new}}, text=f"Lower the L2 penalty from {l2:g} to {new:g}."
    )


def add_label_smoothing(spec: ResolvedSpec) -> Remedy | None:
    if spec.label_smoothing >= 0.1:
        return None
    return Remedy(
        id="add_label_smoothing",
        patch={"regularization": {"label_smoothing": 0.1}},
        text="Use label smoothing 0.1 so the model is not pushed to be certain about possibly wrong labels.",
    )


def add_early_stopping(spec: ResolvedSpec, monitor: str = "val_loss", patience: int = 3) -> Remedy | None:
    es = spec.early_stopping
    if es is not None and es.get("restore_best_weights"):
        return None
    if monitor not in ("loss", "accuracy", "val_loss", "val_accuracy"):
        monitor = "val_loss"
    return Remedy(
        id="add_early_stopping",
        patch={
            "callbacks": {"early_stopping": {"monitor": monitor, "patience": patience, "restore_best_weights": True}}
        },
        text=f"Stop when {monitor} has not improved for {patience} epochs and keep the best weights.",
    )
