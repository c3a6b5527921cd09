"""What a user asks the autopilot for, and the names of its states and end reasons."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.spec import JobSpec

AutopilotMetric = Literal["val_accuracy", "val_loss", "accuracy", "loss"]
EndReason = Literal["healthy", "no_confident_cause", "max_rounds", "no_gain", "cancelled"]
END_REASONS: tuple[str, ...] = ("healthy", "no_confident_cause", "max_rounds", "no_gain", "cancelled")


class AutopilotSpec(BaseModel):
    """Diagnose each job of the lineage when it ends, and fork it with the best untried remedy while that helps."""

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(3, ge=1, le=10, description="Forks the autopilot may start, at most.")
    metric: AutopilotMetric = Field("val_accuracy", description="Compared between parent and child (best epoch of each).")
    min_gain: float = Field(0.01, ge=0, description="A fork helped when it improved the metric by at least this.")
    min_confidence: float = Field(0.7, ge=0, le=1, description="Findings below this confidence are not acted on.")


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


class JobSubmission(JobSpec):
    """`POST /jobs`: the training spec plus an optional autopilot, which is kept out of the stored spec."""

    autopilot: AutopilotSpec | None = Field(None, exclude=True, description="Put the job under autopilot (see "
                                                                              "POST /jobs/{id}/autopilot).")
