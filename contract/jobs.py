"""Response schemas of the job endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from contract.epoch import EpochRead
from contract.status import JobStatusName


class JobLinks(BaseModel):
    self: str
    metrics: str
    analysis: str
    cancel: str


class JobEventRecord(BaseModel):
    """One thing that happened to a job: a state change, a learning-rate cut, a finding, …"""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str = Field(max_length=40, description="state, lr_reduced, early_stopped, finding, enqueued, …")
    from_status: JobStatusName | None = None
    to_status: JobStatusName | None = None
    reason: str | None = None
    data: dict | None = None


class JobEventRead(JobEventRecord):
    """`JobDetail.events` items: the record as stored."""


class JobRecord(BaseModel):
    """What anyone may know of a job. The table (`models.tables.Job`) generates these columns and adds its
    private ones (owner, idempotency key, lease, …); the API answers with `JobRead`."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None = Field(None, max_length=200)
    status: JobStatusName = "queued"
    spec: dict
    parent_id: uuid.UUID | None = None
    created_at: datetime
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    worker_host: str | None = Field(None, max_length=255)
    cancel_requested: bool = False
    error: str | None = None
    stop_reason: str | None = None
    model_path: str | None = None
    artifacts_dir: str | None = None
    class_counts: dict | None = None


class JobRead(JobRecord):
    """`GET /jobs/{id}` and friends: the record as stored, with its links."""

    links: JobLinks


class JobDetail(JobRead):
    events: list[JobEventRead]
    children: list[uuid.UUID]
    ancestors: list[uuid.UUID]
    """Parent first, then its parent, …: the chain of forks this job came from."""


class JobPage(BaseModel):
    items: list[JobRead]
    next_cursor: str | None


class MetricsPage(BaseModel):
    items: list[EpochRead]
    next_after_epoch: int | None
    """Pass as `after_epoch` to fetch only newer epochs (the last epoch returned, or the one you sent)."""
