"""The autopilot: what a user asks for (on its own or with `POST /jobs`), and what the lineage, autopilot and
outcome endpoints answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from contract.spec import JobSpec
from contract.status import JobStatusName

AutopilotMetric = Literal["val_accuracy", "val_loss", "accuracy", "loss"]
EndReason = Literal[
    "healthy", "no_confident_cause", "max_rounds", "no_gain", "cancelled", "target_reached", "invalid_fork"
]
END_REASONS: tuple[str, ...] = get_args(EndReason)
AutopilotState = Literal["active", "ended"]


class AutopilotSpec(BaseModel):
    """Diagnose each job of the lineage when it ends, and fork it with the best untried remedy while that helps."""

    # strict like the job spec: "3" is not 3 and `true` is not 1; NaN and Infinity are refused
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    max_rounds: int = Field(3, ge=1, le=10, description="Forks the autopilot may start, at most.")
    metric: AutopilotMetric = Field(
        "val_accuracy", description="Compared between parent and child (best epoch of each)."
    )
    min_gain: float = Field(0.01, ge=0, description="A fork helped when it improved the metric by at least this.")
    min_confidence: float = Field(0.7, ge=0, le=1, description="Findings below this confidence are not acted on.")
    target: dict[AutopilotMetric, float] | None = Field(
        None,
        description='End the lineage once a job reaches this (e.g. {"val_accuracy": 0.9}; a loss at or below it).',
    )


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


class JobSubmission(JobSpec):
    """`POST /jobs`: the training spec plus an optional autopilot, which is kept out of the stored spec."""

    autopilot: AutopilotSpec | None = Field(
        None, exclude=True, description="Put the job under autopilot (see POST /jobs/{id}/autopilot)."
    )


class AutopilotRecord(BaseModel):
    """One autopilot lineage as anyone may see it; the table (`models.tables.Autopilot`) generates these columns
    and adds its owner."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    root_job_id: uuid.UUID
    config: AutopilotSpec
    state: AutopilotState = "active"
    end_reason: EndReason | None = None
    end_detail: str | None = None
    current_job_id: uuid.UUID
    rounds_done: int = 0
    created_at: datetime
    ended_at: datetime | None = None


class AutopilotRead(AutopilotRecord):
    """`POST /jobs/{id}/autopilot` and `LineageRead.autopilot`: the record as stored."""


class DiagnosisSummary(BaseModel):
    verdict: str
    primary_cause: str | None
    confidence: float | None
    summary: str


class LineageStep(BaseModel):
    round: int | None = Field(
        description="0 for the root; the autopilot round that started this job; None for a manual fork"
    )
    job_id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str | None
    status: JobStatusName
    epochs: int
    best: float | None = Field(description="This job's best value of the lineage's metric")
    diagnosis: DiagnosisSummary
    cause: str | None = Field(None, description="The cause the fork that made this job acted on")
    remedies: list[str] = Field(default_factory=list)
    patch: dict[str, Any] = Field(default_factory=dict)
    parent_best: float | None = None
    gain: float | None = Field(
        None,
        description="best − parent's best (reversed for losses): positive is better; "
        "None until the job ended, or when the two used different data",
    )
    comparison: dict[str, Any] | None = Field(
        None,
        description="Whether this job beat its parent beyond noise: direction (better | worse | unclear), the test "
        "(mcnemar_exact on the same images, newcombe_wilson from the validation size, or min_gain), its evidence, "
        "and the gain at the parent's epoch budget",
    )
    parent_patch_values: dict[str, Any] = Field(
        default_factory=dict, description="The parent's values of the fields the patch set, in the patch's shape"
    )
    start: str | None = Field(None, description="warm (from the parent's weights) | cold; autopilot rounds only")
    epochs_saved: int = Field(0, description="Epochs of the parent a warm start did not train again")
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="What chose this round's remedy and values (follow-up, range test)"
    )


class ProbeWait(BaseModel):
    probe: str
    probe_id: uuid.UUID
    job_id: uuid.UUID
    status: str


class LineageRead(BaseModel):
    job_id: uuid.UUID
    root_id: uuid.UUID
    metric: str
    autopilot: AutopilotRead | None
    steps: list[LineageStep]
    best_job_id: uuid.UUID | None = Field(
        None, description="The job to keep: the best value of the metric among the lineage's succeeded jobs"
    )
    best: float | None = None
    epochs_saved: int = Field(0, description="Over all rounds: epochs that warm starts did not train again")
    waiting_on: list[ProbeWait] = Field(
        default_factory=list,
        description="Probes the autopilot asked for and waits on before its next decision (e.g. a label check "
        "that measures a label-noise suspicion)",
    )


class OutcomeStat(BaseModel):
    cause: str | None
    remedy: str = Field(description='Remedy id, several joined by "+", or "patch" for a fork without remedies')
    metric: str
    count: int
    measured: int = Field(description="Forks whose child ended and could be compared with its parent")
    improved_share: float | None
    median_gain: float | None
    mean_gain: float | None


class OutcomesRead(BaseModel):
    items: list[OutcomeStat]
    ranking: dict[str, Any] = Field(description="The ranking's model and constants (analysis.ranking)")
