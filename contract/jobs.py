"""Response schemas of the job endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from contract.epoch import EpochRead


class JobLinks(BaseModel):
    self: str
    metrics: str
    analysis: str
    cancel: str


class JobEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    data: dict | None


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    status: str
    spec: dict
    parent_id: uuid.UUID | None
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    worker_host: str | None
    cancel_requested: bool
    error: str | None
    stop_reason: str | None
    model_path: str | None
    artifacts_dir: str | None
    class_counts: dict | None
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
