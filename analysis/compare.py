"""Threshold comparisons that ignore float noise, so 0.9 - 0.8 counts as a gap of 0.10.

Each rule compares exactly as its reference states (> or ≥); the tolerance only absorbs rounding.
"""

from __future__ import annotations


def tol(t: float) -> float:
    return 1e-9 * max(1.0, abs(t))


def gt(x: float, t: float) -> bool:
    return x > t + tol(t)


def ge(x: float, t: float) -> bool:
    return x >= t - tol(t)


def lt(x: float, t: float) -> bool:
    return x < t - tol(t)


def le(x: float, t: float) -> bool:
    return x <= t + tol(t)
