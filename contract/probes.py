"""Probes: short, budgeted experiments the worker runs on a job's own data and latest weights.

Pure data: what a user asks for (`ProbeRequest`, the spec's `diagnosis`), what a probe row reads back
(`ProbeRead`), and the result shape of each probe, which the analysis reads like an epoch row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ProbeName = Literal["lr_range", "memorization", "linear_probe", "label_check"]
PROBE_NAMES: tuple[str, ...] = ("lr_range", "memorization", "linear_probe", "label_check")
ProbeStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ProbeTrigger = Literal["stall", "request", "autopilot"]

DEFAULT_BUDGET_SECONDS = 120
MAX_BUDGET_SECONDS = 3600
BudgetSeconds = Annotated[
    int,
    Field(
        ge=1, le=MAX_BUDGET_SECONDS, description="Wall-clock seconds each probe may run; it stops and says so after."
    ),
]


class DiagnosisSpec(BaseModel):
    """The spec's `diagnosis`: which probes run when a stall is first detected, and their budget."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    probes: Literal["auto", "off"] | list[ProbeName] = Field(
        "off",
        description='"auto": every probe when a stall is first detected; a list: those probes; "off": none '
        "(POST /jobs/{id}/probes still runs them on demand).",
    )
    budget_seconds: BudgetSeconds = DEFAULT_BUDGET_SECONDS

    def names(self) -> list[str]:
        if self.probes == "auto":
            return list(PROBE_NAMES)
        if self.probes == "off":
            return []
        return list(dict.fromkeys(self.probes))


class ProbeRequest(BaseModel):
    """`POST /jobs/{id}/probes`."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    probes: list[ProbeName] | None = Field(None, min_length=1, description="Which probes; all when omitted.")
    budget_seconds: BudgetSeconds | None = Field(
        None, description="Per probe; the job's diagnosis.budget_seconds when omitted."
    )

    def names(self) -> list[str]:
        return list(PROBE_NAMES) if self.probes is None else list(dict.fromkeys(self.probes))


class ProbeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    job_id: uuid.UUID
    name: str
    status: ProbeStatus
    trigger: ProbeTrigger
    inputs: dict[str, Any]
    result: dict[str, Any] | None = Field(
        description="The probe's result (see the *Result schemas); null until it ends."
    )
    error: str | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None


class ProbeList(BaseModel):
    items: list[ProbeRead]


# --- results: what each probe measured -------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    truncated: bool = Field(False, description="The budget ran out before the probe finished its plan.")
    statement: str = Field(description="What was measured, in one sentence.")


class LrRangeResult(_Result):
    part: str = Field(description='What the sweep trained: "head" (on cached features) or "model".')
    rates: list[float]
    losses: list[float] = Field(description="Smoothed loss after each step (EMA, β 0.98, bias-corrected).")
    suggested_rate: float | None = Field(description="Where the smoothed loss falls fastest (steepest descent).")
    valley_rate: float | None = Field(description="fastai's valley: within the longest descending stretch.")
    usable_range: list[float] | None = Field(description="[lo, hi]: from the start of that stretch to the minimum.")
    job_rate: float
    job_rate_verdict: Literal["too_high", "too_low", "within_range", "unknown"]
    diverged: bool = Field(description="The smoothed loss passed 4× its minimum (or went non-finite).")


class MemorizationResult(_Result):
    images: int
    per_class: int
    steps: int
    accuracy: float
    loss: float | None = Field(description="Null when the loss went non-finite.")
    chance_loss: float = Field(description="ln K: the loss of a uniform guess.")
    fitted: bool = Field(description="accuracy ≥ 0.95 or loss ≤ 0.1·ln K with regularization off.")


class LinearProbeResult(_Result):
    folds: int
    images: int
    accuracy: float | None = Field(description="Out-of-fold accuracy of a logistic regression on pooled features.")
    interval: list[float] | None = Field(description="95 % Wilson interval of that accuracy.")
    chance: float = Field(description="max(1/K, the largest class's share).")
    informative: bool | None = Field(description="The interval's lower bound is above chance.")
    C: float | None = Field(
        None,
        description="The logistic regression's inverse L2 strength, 1 / the mean squared norm of the training "
        "folds' standardised features (a prior giving each logit unit variance), averaged over the folds.",
    )


class LabelIssue(BaseModel):
    file: str = Field(description="Path under the job's train_dir (what dataset.exclude takes).")
    given: str
    suspected: str
    score: float = Field(description="1 − the out-of-sample probability of the given label: higher is more suspect.")


class LabelCheckResult(_Result):
    method: Literal["cleanlab", "plateau"]
    images: int
    classes: list[str]
    noise_rate: float | None = Field(
        description="Estimated share of images whose given label is wrong; null when the features do not separate "
        "the classes better than chance (then no image is suspected)."
    )
    p_value: float | None = Field(
        None,
        description="One-sided p-value that the out-of-fold probabilities favour the given labels no more than the "
        "class shares would; 0.025 or more: the features are taken as not separating the classes (noise_rate null).",
    )
    pair_noise: list[dict[str, Any]] = Field(description="{given, true, rate}: the off-diagonal confident joint.")
    issues: list[LabelIssue] = Field(description="Suspects, most suspect first.")


class LabelIssueRead(LabelIssue):
    n: int = Field(description="Rank in the label check (0 is the most suspect); GET …/label-issues/{n}/image.")


class LabelIssuePage(BaseModel):
    probe_id: uuid.UUID | None = Field(description="The label check these come from; null when none has finished.")
    noise_rate: float | None
    total: int
    items: list[LabelIssueRead]
    next_cursor: str | None
