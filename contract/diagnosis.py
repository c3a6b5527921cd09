"""What the analysis answers: findings with evidence and remedies, abstentions, and the diagnosis."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Verdict = Literal["healthy", "stagnating", "diverging", "insufficient_data"]


class Remedy(BaseModel):
    id: str = Field(description='Stable identifier, e.g. "increase_dropout".')
    text: str
    patch: dict[str, Any] = Field(
        default_factory=dict, description="JSON merge patch (RFC 7386) on the job spec; {} for advice outside the spec."
    )


class Finding(BaseModel):
    rule: str
    cause: str
    confidence: float = Field(ge=0, le=1)
    summary: str
    thresholds: dict[str, Any] = Field(default_factory=dict)
    observed: dict[str, Any] = Field(default_factory=dict)
    epochs: list[int] = Field(default_factory=list)
    remedies: list[Remedy] = Field(default_factory=list, description="Best first.")
    diverging: bool = Field(False, description="The history shows non-finite or exploding loss.")


class Abstention(BaseModel):
    rule: str
    reason: str
    missing: list[str] = Field(default_factory=list, description="Signals the rule needed but the history lacks.")


class Diagnosis(BaseModel):
    verdict: Verdict
    primary_cause: str | None = None
    findings: list[Finding] = Field(default_factory=list, description="Highest confidence first.")
    abstentions: list[Abstention] = Field(default_factory=list)
    epochs_analysed: int = 0
    summary: str
