"""Spec arithmetic for remedies; reading a stored spec is `contract.resolved.ResolvedSpec`."""

from __future__ import annotations

from contract.resolved import INCEPTION_BLOCKS

__all__ = ["fewer_trainable", "round_sig"]


def fewer_trainable(trainable: str | int) -> str | int | None:
    """One step towards a frozen base: all → top blocks → fewer blocks → head. None when already frozen."""
    if trainable == "head":
        return None
    if trainable == "all":
        return "mixed8"
    if isinstance(trainable, int):
        return trainable // 2 if trainable // 2 >= 1 else "head"
    if trainable in INCEPTION_BLOCKS[:-1]:
        return INCEPTION_BLOCKS[INCEPTION_BLOCKS.index(trainable) + 1]
    return "head"


def round_sig(x: float, digits: int = 3) -> float:
    """Keep suggested values readable: 0.00010000000000000002 → 0.0001."""
    return float(f"{x:.{digits}g}")
