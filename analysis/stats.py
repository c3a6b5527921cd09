"""Statistics that respect the number of images behind an accuracy and the noise of a curve.

Wilson score intervals for accuracies (binomial: k of n images right) and Theil–Sen slopes with their
confidence interval for trends over epochs (`scipy.stats.theilslopes`), instead of fixed thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959964


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion k/n (k may be p·n); None without images."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def significantly_above(a: float, b: float, n: int | None, floor: float = 0.0, z: float = 2.0) -> bool:
    """Accuracy `a` beats `b`, both measured on the same n images, by more than z binomial standard errors of
    their difference (and by at least `floor`); without n only the floor applies."""
    if n:
        p = (a + b) / 2
        se = math.sqrt(max(2 * p * (1 - p), 0.0) / n)
        return a - b > max(floor, z * se)
    return a - b > floor


@dataclass(frozen=True)
class Trend:
    slope: float
    low: float
    high: float

    @property
    def rising(self) -> bool:
        return self.low > 0

    @property
    def falling(self) -> bool:
        return self.high < 0


def trend(values: list[float], epochs: list[int] | None = None, confidence: float = 0.95) -> Trend | None:
    """Theil–Sen slope per epoch with its confidence interval; None with fewer than three values."""
    if len(values) < 3:
        return None
    from scipy.stats import theilslopes  # imported on first use: scipy.stats costs ~0.3 s to import

    x = epochs if epochs is not None else list(range(len(values)))
    slope, _, low, high = theilslopes(values, x, alpha=confidence)
    return Trend(float(slope), float(low), float(high))
