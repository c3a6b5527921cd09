"""SQL tables: the database is the source of truth for jobs."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from contract.epoch import EpochRecord
from models.db import UTCDateTime


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status", "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner: str = Field(default="default", max_length=200)
    name: str | None = Field(default=None, max_length=200)
    status: str = Field(default=JobStatus.queued.value, max_length=20)
    spec: dict = Field(sa_column=Column(JSON, nullable=False))
    spec_hash: str = Field(max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    parent_id: uuid.UUID | None = Field(default=None, foreign_key="jobs.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    enqueued_at: datetime | None = _ts(nullable=True)
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    lease_until: datetime | None = _ts(nullable=True)
    attempts: int = 0
    worker_host: str | None = Field(default=None, max_length=255)
    cancel_requested: bool = False
    error: str | None = None
    stop_reason: str | None = None
    artifacts_dir: str | None = None
    model_path: str | None = None
    class_counts: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Bumped with every epoch row written: a metrics page is unchanged while this is (ETag, page cache).
    metrics_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class _EpochKey(SQLModel):
    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True)
    epoch: int


def signal_columns(record: type[BaseModel], base: type[SQLModel] = SQLModel) -> type[SQLModel]:
    """A SQLModel base with one nullable column per signal of the contract's `record`: scalars as their SQL
    type, structured values (per-class dicts, matrices) as JSON."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": annotations}
    for name, info in record.model_fields.items():
        if name == "epoch":  # part of the key
            continue
        annotations[name] = info.annotation
        structured = any(get_origin(t) in (dict, list) for t in get_args(info.annotation))
        namespace[name] = (
            Field(default=None, sa_column=Column(JSON, nullable=True))
            if structured
            else Field(default=None, nullable=True)
        )
    return type(f"{record.__name__}Columns", (base,), namespace)


class EpochMetric(signal_columns(EpochRecord, _EpochKey), table=True):
    """One row per finished epoch: the key, every signal of `contract.epoch.EpochRecord`, and when it was written."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),)

    recorded_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class JobEvent(SQLModel, table=True):
    __tablename__ = "job_events"

    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    kind: str = Field(max_length=40, description="state, lr_reduced, early_stopped, finding, enqueued, …")
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    reason: str | None = None
    data: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ApiKey(SQLModel, table=True):
    """A bearer token, stored as its SHA-256 only; each belongs to one tenant, or sees every tenant when admin."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=200, index=True)
    key_hash: str = Field(max_length=64, unique=True)
    admin: bool = False
    label: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = _ts(nullable=True)


class Autopilot(SQLModel, table=True):
    """One autopilot lineage: its whole state is this row and its fork outcomes, so restarts lose nothing."""

    __tablename__ = "autopilots"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    root_job_id: uuid.UUID = Field(foreign_key="jobs.id", unique=True)
    owner: str = Field(max_length=200, index=True)
    config: dict = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(default="active", max_length=20, index=True, description="active | ended")
    end_reason: str | None = Field(default=None, max_length=40)
    end_detail: str | None = None
    current_job_id: uuid.UUID = Field(foreign_key="jobs.id")
    rounds_done: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    ended_at: datetime | None = _ts(nullable=True)


class ForkOutcome(SQLModel, table=True):
    """A fork and, once its child ended, its measured effect on the metric (manual forks too)."""

    __tablename__ = "fork_outcomes"
    # A round of an autopilot exists at most once, whoever races to start it (manual forks have NULLs here).
    __table_args__ = (
        UniqueConstraint("autopilot_id", "round", name="uq_fork_outcomes_autopilot_round"),
        Index("ix_fork_outcomes_owner_cause", "owner", "cause"),
    )

    id: int | None = Field(default=None, primary_key=True)
    parent_id: uuid.UUID = Field(foreign_key="jobs.id", index=True)
    child_id: uuid.UUID = Field(foreign_key="jobs.id", unique=True)
    owner: str = Field(max_length=200)
    cause: str | None = Field(default=None, max_length=80)
    remedies: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    patch: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metric: str = Field(default="val_accuracy", max_length=40)
    parent_best: float | None = None
    child_best: float | None = None
    gain: float | None = None
    parent_epochs: int | None = None
    child_epochs: int | None = None
    autopilot_id: uuid.UUID | None = Field(default=None, foreign_key="autopilots.id", index=True)
    round: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    measured_at: datetime | None = _ts(nullable=True)


class Probe(SQLModel, table=True):
    """One budgeted experiment on a job's data and latest weights (`contract.probes`); never changes the job."""

    __tablename__ = "probes"
    __table_args__ = (Index("ix_probes_job_created", "job_id", "created_at"), Index("ix_probes_status", "status"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id")
    name: str = Field(max_length=40)
    status: str = Field(default=JobStatus.queued.value, max_length=20)
    trigger: str = Field(default="request", max_length=20, description="stall | request")
    inputs: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    worker_host: str | None = Field(default=None, max_length=255)
    lease_until: datetime | None = _ts(nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    duration_seconds: float | None = None
