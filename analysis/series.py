"""Small linear-time helpers on metric curves. Each is O(n): histories can be 10,000 epochs long."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import sub

from analysis.compare import ge


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass
class Series:
    """The recorded values of one signal, with the epochs they belong to (unrecorded epochs left out)."""

    name: str
    epochs: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def last(self) -> float:
        return self.values[-1]

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1]

    def argmin(self) -> int:
        return self.values.index(min(self.values))  # first minimum, at C speed

    def tail(self, n: int) -> list[float]:
        return self.values[-n:] if n > 0 else []


def max_gain(values: list[float]) -> float:
    """Largest epoch-to-epoch increase, never below 0 (AutoTrainer `max_delta_acc`)."""
    return max(0.0, max(map(sub, values[1:], values), default=0.0))


def count_swings(values: list[float], amplitude: float) -> int:
    """AutoTrainer `ol_judge`: pair the i-th local maximum with the i-th local minimum (ties count as both)
    and count the pairs whose difference is at least `amplitude`."""
    # zip straight into comprehensions: no list of tuples, which would make the collector walk the whole history
    maxima = [cur for prev, cur, nxt in zip(values, values[1:], values[2:]) if cur >= prev and cur >= nxt]
    minima = [cur for prev, cur, nxt in zip(values, values[1:], values[2:]) if cur <= prev and cur <= nxt]
    return sum(1 for hi, lo in zip(maxima, minima) if ge(hi - lo, amplitude))


def median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
