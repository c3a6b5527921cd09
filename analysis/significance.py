"""Whether one run beat another beyond measurement noise, on a validation set of n images.

Two runs scored on the SAME images are compared image by image: McNemar's test on the discordant pairs, in its
exact binomial form (Dietterich 1998), which stays valid with the few disagreements a small set gives. Without
per-image predictions, each accuracy gets a Wilson score interval from the validation size and the difference
gets Newcombe's hybrid score interval built from them. Without a validation size (or for a loss), the caller's
fixed minimum gain is all there is. Pure: no database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from scipy.stats import binomtest, norm

ALPHA = 0.05  # one-sided: a round "helped" when the child is better at this level, "worse" symmetrically

Direction = Literal["better", "worse", "unclear"]


@dataclass(frozen=True)
class Comparison:
    direction: Direction
    test: str  # mcnemar_exact | newcombe_wilson | min_gain
    evidence: dict = field(default_factory=dict)


def wilson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Wilson score interval of a proportion (two-sided 1 - 2·alpha, so each side is at `alpha`)."""
    if n <= 0:
        return 0.0, 1.0
    z = norm.ppf(1 - alpha)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(parent_correct: list[bool], child_correct: list[bool], alpha: float = ALPHA) -> Comparison:
    """Paired comparison on the same images: b = only the parent right, c = only the child right."""
    if len(parent_correct) != len(child_correct):
        raise ValueError("the two runs were scored on different numbers of images")
    b = sum(p and not c for p, c in zip(parent_correct, child_correct))
    c = sum(c and not p for p, c in zip(parent_correct, child_correct))
    evidence = {"images": len(parent_correct), "only_parent_right": b, "only_child_right": c}
    if b + c == 0:
        return Comparison("unclear", "mcnemar_exact", {**evidence, "p_better": 1.0, "p_worse": 1.0})
    p_better = binomtest(c, b + c, 0.5, alternative="greater").pvalue
    p_worse = binomtest(b, b + c, 0.5, alternative="greater").pvalue
    direction: Direction = "better" if p_better < alpha else "worse" if p_worse < alpha else "unclear"
    return Comparison(
        direction,
        "mcnemar_exact",
        {**evidence, "p_better": round(float(p_better), 6), "p_worse": round(float(p_worse), 6)},
    )


def newcombe(parent: float, child: float, n_parent: int, n_child: int, alpha: float = ALPHA) -> Comparison:
    """Two accuracies on validation sets of known size: Newcombe's interval for child − parent."""
    l1, u1 = wilson(parent * n_parent, n_parent, alpha)
    l2, u2 = wilson(child * n_child, n_child, alpha)
    d = child - parent
    low = d - math.sqrt((child - l2) ** 2 + (u1 - parent) ** 2)
    high = d + math.sqrt((u2 - child) ** 2 + (parent - l1) ** 2)
    direction: Direction = "better" if low > 0 else "worse" if high < 0 else "unclear"
    evidence = {"images": n_child, "difference": round(d, 6), "interval": [round(low, 6), round(high, 6)]}
    return Comparison(direction, "newcombe_wilson", evidence)


def by_min_gain(gain: float, min_gain: float) -> Comparison:
    """No validation size to reason with: the caller's fixed threshold, both ways."""
    direction: Direction = "better" if gain >= min_gain else "worse" if gain <= -min_gain else "unclear"
    return Comparison(direction, "min_gain", {"gain": round(gain, 6), "min_gain": min_gain})
