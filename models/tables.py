"""SQL tables: the database is the source of truth for jobs."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from contract.autopilot import AutopilotRecord
from contract.epoch import EpochRecord
from contract.jobs import JobEventRecord, JobRecord
from contract.status import JOB_STATUSES, TERMINAL_STATUSES
from models.db import UTCDateTime


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class _JobStatusEnum(str, Enum):
    @property
    def terminal(self) -> bool:
        return self.value in TERMINAL_STATUSES


JobStatus = _JobStatusEnum("JobStatus", [(name, name) for name in JOB_STATUSES], module=__name__)
"""`contract.status.JobStatusName` as a `str, Enum`: `JobStatus.queued.value`, `JobStatus(s).terminal`."""


def _sql_type(annotation: Any) -> Any:
    """What SQLModel maps to a column: a Literal of strings is stored as a string."""
    if get_origin(annotation) is Literal:
        return str
    args = get_args(annotation)
    if any(get_origin(t) is Literal for t in args):
        return str | None if type(None) in args else str
    return annotation


def record_columns(
    record: type[BaseModel],
    base: type[SQLModel] = SQLModel,
    *,
    skip: tuple[str, ...] = (),
    sql: dict[str, Any] | None = None,
) -> type[SQLModel]:
    """A SQLModel base with one column per field of the contract's `record`, so the table and the API share one
    declaration. A field's column is `sql[name]` when given (a `Field`, or an `(annotation, Field)` pair), else:
    structured values (dicts, lists, matrices) as nullable JSON, the rest as their SQL type with the contract's
    default and length limit."""
    sql = sql or {}
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": annotations}
    for name, info in record.model_fields.items():
        if name in skip:
            continue
        annotation, column = sql.get(name, (None, None)) if isinstance(sql.get(name), tuple) else (None, sql.get(name))
        annotations[name] = annotation or _sql_type(info.annotation)
        if column is None:
            structured = any(
                get_origin(t) in (dict, list) or t in (dict, list)
                for t in (info.annotation, *get_args(info.annotation))
            )
            max_length = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), None)
            column = (
                Field(default=None, sa_column=Column(JSON, nullable=True))
                if structured
                else Field(default=info.default, max_length=max_length)
            )
        namespace[name] = column
    return type(f"{record.__name__}Columns", (base,), namespace)


def signal_columns(record: type[BaseModel], base: type[SQLModel] = SQLModel) -> type[SQLModel]:
    """A SQLModel base with one nullable column per signal of the contract's `record` (the key is the base's)."""
    return record_columns(record, base, skip=("epoch",))


class Job(
    record_columns(
        JobRecord,
        sql={
            "id": Field(default_factory=uuid.uuid4, primary_key=True),
            "status": Field(default=JobStatus.queued.value, max_length=20),
            "spec": Field(sa_column=Column(JSON, nullable=False)),
            "parent_id": Field(default=None, foreign_key="jobs.id"),
            "created_at": Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)),
            "enqueued_at": _ts(nullable=True),
            "started_at": _ts(nullable=True),
            "finished_at": _ts(nullable=True),
        },
    ),
    table=True,
):
    """One job: every field of `contract.jobs.JobRecord`, then the columns its API does not show."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status", "status"),
    )

    owner: str = Field(default="default", max_length=200)
    spec_hash: str = Field(max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = _ts(nullable=True)
    # Bumped with every epoch row written: a metrics page is unchanged while this is (ETag, page cache).
    metrics_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class _EpochKey(SQLModel):
    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True)
    epoch: int


class EpochMetric(signal_columns(EpochRecord, _EpochKey), table=True):
    """One row per finished epoch: the key, every signal of `contract.epoch.EpochRecord`, and when it was written."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),)

    recorded_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class _EventKey(SQLModel):
    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True)


class JobEvent(
    record_columns(
        JobEventRecord,
        _EventKey,
        sql={
            "at": Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)),
            "kind": Field(max_length=40),
            "from_status": Field(default=None, max_length=20),
            "to_status": Field(default=None, max_length=20),
        },
    ),
    table=True,
):
    """One row per event of a job: the key and every field of `contract.jobs.JobEventRecord`."""

    __tablename__ = "job_events"


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


class Autopilot(
    record_columns(
        AutopilotRecord,
        sql={
            "id": Field(default_factory=uuid.uuid4, primary_key=True),
            "root_job_id": Field(foreign_key="jobs.id", unique=True),
            "config": (dict, Field(sa_column=Column(JSON, nullable=False))),
            "state": Field(default="active", max_length=20, index=True),
            "end_reason": Field(default=None, max_length=40),
            "current_job_id": Field(foreign_key="jobs.id"),
            "created_at": Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)),
            "ended_at": _ts(nullable=True),
        },
    ),
    table=True,
):
    """One autopilot lineage: its whole state is this row and its fork outcomes, so restarts lose nothing."""

    __tablename__ = "autopilots"

    owner: str = Field(max_length=200, index=True)


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
    # Whether the child beat its parent beyond noise (analysis.significance): direction, test, its evidence, and
    # the gain at the parent's epoch budget.
    comparison: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class WebhookDelivery(SQLModel, table=True):
    """The webhook outbox: one row per event to send, written in the transaction of the change it reports, so a
    committed change is never without its delivery and a rolled-back one never has one (`models.webhooks.outbox`)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", index=True)
    owner: str = Field(max_length=200)
    url: str = Field(max_length=2048)
    target: str = Field(max_length=300, description="scheme://host:port of `url`: the unit of per-target concurrency")
    event: str = Field(max_length=20)
    body: dict = Field(sa_column=Column(JSON, nullable=False))
    delivery_id: str = Field(max_length=32, description="X-Plateau-Delivery: the same on every try")
    state: str = Field(default="pending", max_length=12, description="pending | sending | delivered | dead")
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    claimed_until: datetime | None = _ts(nullable=True)
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    delivered_at: datetime | None = _ts(nullable=True)


class ValPredictions(SQLModel, table=True):
    """The predicted class of every validation image at a job's best epoch, with the labels, in validation-file
    order (contract.predictions): two jobs on the same images are compared image by image (McNemar), not by one
    accuracy each. A table of its own, so reading jobs never loads them."""

    __tablename__ = "val_predictions"

    job_id: uuid.UUID = Field(foreign_key="jobs.id", primary_key=True)
    epoch: int
    stored: dict = Field(sa_column=Column(JSON, nullable=False))


class AutopilotRound(SQLModel, table=True):
    """A round's intent, claimed before its child exists: one transaction writes it and bumps the lineage's round
    counter, then the child is created from it under a key derived from the lineage and round, so a retry after
    any crash adopts the round (and finds its child) instead of deciding again."""

    __tablename__ = "autopilot_rounds"
    __table_args__ = (UniqueConstraint("autopilot_id", "round", name="uq_autopilot_rounds_round"),)

    id: int | None = Field(default=None, primary_key=True)
    autopilot_id: uuid.UUID = Field(foreign_key="autopilots.id", index=True)
    round: int
    parent_id: uuid.UUID = Field(foreign_key="jobs.id")
    cause: str | None = Field(default=None, max_length=80)
    confidence: float | None = None
    remedy: str = Field(max_length=80)
    text: str | None = None
    patch: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    evidence: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    start: str = Field(default="cold", max_length=10, description="warm (from the parent's weights) | cold")
    child_id: uuid.UUID | None = Field(default=None, foreign_key="jobs.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Probe(SQLModel, table=True):
    """One budgeted experiment on a job's data and latest weights (`contract.probes`); never changes the job."""

    __tablename__ = "probes"
    __table_args__ = (Index("ix_probes_job_created", "job_id", "created_at"), Index("ix_probes_status", "status"))

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id")
    name: str = Field(max_length=40)
    status: str = Field(default=JobStatus.queued.value, max_length=20)
    trigger: str = Field(default="request", max_length=20, description="stall | request | autopilot")
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
