"""Response schemas, kept apart from the spec (input) and the tables (core)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


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


class EpochRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float | None
    epoch_seconds: float | None
    images_per_second: float | None
    train_eval_loss: float | None
    train_eval_accuracy: float | None
    regularization_loss: float | None = None
    batch_loss_mean: float | None
    batch_loss_std: float | None
    batch_loss_max: float | None
    nonfinite_batches: int | None
    grad_norm: float | None
    update_ratio_head: float | None
    update_ratio_base: float | None
    val_recall: dict | None
    val_support: dict | None
    confusion: list | None
    recorded_at: datetime


class MetricsPage(BaseModel):
    items: list[EpochRead]
    next_after_epoch: int | None
    """Pass as `after_epoch` to fetch only newer epochs (the last epoch returned, or the one you sent)."""
