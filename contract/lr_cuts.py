"""One learning-rate-cut detector, shared by the trainer's `lr_reduced` events, the per-epoch diagnosis inside
training and the analysis of a stored history."""

from __future__ import annotations

from collections.abc import Iterable

RELATIVE = 1e-6  # a float32 round trip of the same rate is not a cut


def is_cut(before: float | None, after: float | None) -> bool:
    """The rate went down from `before` to `after` (by more than rounding); False when either is unknown."""
    return before is not None and after is not None and after < before * (1 - RELATIVE)


def cut_epochs(epochs: Iterable[int], rates: Iterable[float | None]) -> list[int]:
    """Epochs that trained at a lower rate than the previous epoch with a recorded rate (unrecorded ones skipped)."""
    cuts, previous = [], None
    for epoch, rate in zip(epochs, rates):
        if rate is None:
            continue
        if is_cut(previous, rate):
            cuts.append(epoch)
        previous = rate
    return cuts
