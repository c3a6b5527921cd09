"""The rule registry, in reporting order (ties in confidence keep this order)."""

from analysis.rule import Rule
from analysis.rules import (
    batchnorm_mismatch,
    class_imbalance,
    label_noise,
    lr_too_high,
    not_learning,
    overfitting,
    plateau,
    premature_lr_cut,
    underfitting,
)

RULES: dict[str, Rule] = {
    m.RULE.id: m.RULE
    for m in (
        lr_too_high,
        not_learning,
        batchnorm_mismatch,
        overfitting,
        underfitting,
        premature_lr_cut,
        class_imbalance,
        label_noise,
        plateau,
    )
}

__all__ = ["RULES"]
