"""Remedy builders: each reads the current spec and returns a Remedy with a computed patch, or None if it does not apply."""

from analysis.findings import Remedy
from analysis.remedies.capacity import (
    freeze_more_layers,
    unfreeze_fewer_at_low_lr,
    unfreeze_top_blocks,
    use_imagenet_weights,
)
from analysis.remedies.data import (
    balance_class_weights,
    collect_more_data,
    confirm_with_cleanlab,
    exclude_label_issues,
)
from analysis.remedies.optimize import (
    add_reduce_lr_on_plateau,
    increase_batch_size,
    increase_learning_rate,
    lengthen_reduce_lr_patience,
    lower_learning_rate,
    raise_min_lr,
    step_factor,
    switch_to_adam,
    train_longer,
)
from analysis.remedies.regularize import (
    add_early_stopping,
    add_l2,
    add_label_smoothing,
    augment,
    increase_dropout,
    reduce_dropout,
    reduce_l2,
)


def ranked(*remedies: Remedy | None) -> list[Remedy]:
    """Drop the ones that do not apply and duplicates by id, keeping the given order (best first)."""
    seen: set[str] = set()
    out = []
    for r in remedies:
        if r is not None and r.id not in seen:
            seen.add(r.id)
            out.append(r)
    return out


__all__ = [
    "add_early_stopping",
    "add_l2",
    "add_label_smoothing",
    "add_reduce_lr_on_plateau",
    "augment",
    "balance_class_weights",
    "collect_more_data",
    "confirm_with_cleanlab",
    "exclude_label_issues",
    "freeze_more_layers",
    "increase_batch_size",
    "increase_dropout",
    "increase_learning_rate",
    "lengthen_reduce_lr_patience",
    "lower_learning_rate",
    "raise_min_lr",
    "ranked",
    "reduce_dropout",
    "reduce_l2",
    "step_factor",
    "switch_to_adam",
    "train_longer",
    "unfreeze_fewer_at_low_lr",
    "unfreeze_top_blocks",
    "use_imagenet_weights",
]
