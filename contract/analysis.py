"""Request and response schemas of the analysis endpoints."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contract.diagnosis import Diagnosis
from contract.status import JobStatusName


class AnalysisRead(Diagnosis):
    job_id: uuid.UUID
    status: JobStatusName
    pre_training: list[dict] = Field(default_factory=list, description="Findings recorded before any training step.")


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apply: list[str] = Field(default_factory=list, description="Remedy ids from this job's analysis, applied in order.")
    patch: dict[str, Any] = Field(default_factory=dict, description="A JSON merge patch on the spec, applied last.")
