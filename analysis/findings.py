"""The analysis' vocabulary: the contract's findings, remedies and diagnosis, and how confident a rule may be."""

from __future__ import annotations

from contract.diagnosis import Abstention, Diagnosis, Finding, Remedy, Verdict

__all__ = ["Abstention", "Diagnosis", "Finding", "Remedy", "Verdict", "clamp"]


def clamp(x: float, lo: float = 0.0, hi: float = 0.99) -> float:
    """Confidences stay below 1: no curve proves a cause."""
    return round(max(lo, min(hi, x)), 3)
