"""The rule registry, in reporting order (ties in confidence keep this order)."""

from analysis.rule import Rule
from analysis.rules import (batchnorm_mismatch, class_imbalance, label_noise, lr_too_high, overfitting, plateau,
                            underfitting)

RULES: dict[str, Rule] = {m.RULE.id: m.RULE for m in (
    lr_too_high, batchnorm_mismatch, overfitting, underfitting, class_imbalance, label_noise, plateau,
)}

__all__ = ["RULES"]
