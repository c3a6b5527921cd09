"""Job logic behind the routes: create, list, read, cancel."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime, timezone

from pydantic_core import from_json
from sqlalchemy import JSON, Text, and_, cast, func, or_, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from analysis.rules import RULES
from contract.spec import JobSpec
from models import lifecycle
from models.broker import enqueue
from models.checkpoints import checkpoint_file
from models.errors import Conflict, InvalidField, LimitExceeded, NotFound, field_error
from models.paths import NameTooLong, PathEscape, resolve_under
from models.settings import Settings
from models.tables import EpochMetric, Job, JobEvent, JobStatus
from models.webhooks import host_refusal


def spec_hash(spec: JobSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_spec_in_context(*, spec: JobSpec, settings: Settings) -> None:
    """What the schema alone cannot know: paths stay inside the data root and exist; webhook targets this service
    may reach; limits of this service."""
    errors = []
    for loc, user_path in spec.path_fields().items():
        shown = _shown(user_path)
        try:
            target = resolve_under(settings.data_root, user_path)
        except NameTooLong as exc:
            errors.append(field_error(loc, f"{shown} {exc}", "path_too_long"))
            continue
        except PathEscape as exc:
            errors.append(field_error(loc, f"{shown} {exc}", "path_escape"))
            continue
        try:
            exists = target.exists()
        except OSError as exc:  # e.g. a folder on the way that the service may not read
            errors.append(
                field_error(loc, f"{shown} cannot be read under the data root ({exc.strerror})", "path_unreadable")
            )
            continue
        if not exists:
            errors.append(field_error(loc, f"{shown} does not exist under the data root", "path_missing"))
    errors += _exclusion_errors(spec=spec, settings=settings)
    if spec.on_stagnation is not None and spec.on_stagnation.rules is not None:
        unknown = [r for r in spec.on_stagnation.rules if r not in RULES]
        if unknown:
            errors.append(
                field_error(
                    ("on_stagnation", "rules"), f"unknown rule id(s) {unknown}; known: {sorted(RULES)}", "unknown_rule"
                )
            )
    if spec.webhook is not None and not settings.webhook_allow_private:
        why = host_refusal(spec.webhook.host)
        if why:
            errors.append(
                field_error(
                    ("webhook", "url"),
                    f"host {spec.webhook.host!r} is {why}; webhook targets must "
                    "be public (the service allows private targets only with "
                    "PLATEAU_WEBHOOK_ALLOW_PRIVATE=true)",
                    "value_error",
                )
            )
    if spec.dataset.image_size > settings.max_image_size:
        errors.append(
            field_error(
                ("dataset", "image_size"),
                f"{spec.dataset.image_size} is above this service's limit of {settings.max_image_size}",
                "limit",
            )
        )
    if spec.epochs > settings.max_epochs:
        errors.append(
            field_error(("epochs",), f"{spec.epochs} is above this service's limit of {settings.max_epochs}", "limit")
        )
    if errors:
        raise InvalidField(errors)


def check_init_from(*, session: Session, spec: JobSpec, owner: str, settings: Settings) -> None:
    """A warm start needs a job of the same tenant (another tenant's reads as unknown), that checkpoint on disk,
    and the same head: the same number of classes and dense_units, or the weights cannot load."""
    init = spec.model.init_from
    if init is None:
        return
    loc = ("model", "init_from")
    source = session.get(Job, init.job)
    if source is None or source.owner != owner:
        raise InvalidField([field_error((*loc, "job"), f"no job {init.job} of this tenant", "not_found")])
    if not checkpoint_file(settings.artifacts_dir, source.id, init.checkpoint).is_file():
        raise InvalidField(
            [
                field_error(
                    (*loc, "checkpoint"),
                    f"job {source.id} ({source.status}) has no {init.checkpoint!r} checkpoint",
                    "checkpoint_missing",
                )
            ]
        )
    errors = []
    source_units = (source.spec.get("model") or {}).get("dense_units")
    if source_units != spec.model.dense_units:
        errors.append(
            field_error(
                ("model", "dense_units"),
                f"{spec.model.dense_units} does not match the {source_units} of init_from job {source.id}",
                "head_mismatch",
            )
        )
    source_classes = len((source.class_counts or {}).get("train") or {})
    try:
        train_dir = resolve_under(settings.data_root, spec.dataset.train_dir)
        classes = sum(1 for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except (OSError, PathEscape):
        classes = None  # reported by check_spec_in_context
    if source_classes and classes is not None and classes != source_classes:
        errors.append(
            field_error(
                ("dataset", "train_dir"),
                f"has {classes} classes; init_from job {source.id} was trained on {source_classes}",
                "head_mismatch",
            )
        )
    if errors:
        raise InvalidField(errors)


def _exclusion_errors(*, spec: JobSpec, settings: Settings) -> list[dict]:
    """Each `dataset.exclude` entry must name a file inside train_dir (its class folders)."""
    if not spec.dataset.exclude:
        return []
    try:
        train_dir = resolve_under(settings.data_root, spec.dataset.train_dir)
    except PathEscape:
        return []  # reported on dataset.train_dir
    errors = []
    for loc, user_path in spec.excluded_paths().items():
        shown = _shown(user_path)
        try:
            target = resolve_under(train_dir, user_path)
        except PathEscape as exc:
            errors.append(field_error(loc, f"{shown} {str(exc).replace('data root', 'train_dir')}", "path_escape"))
            continue
        if len(target.relative_to(train_dir).parts) != 2:
            errors.append(field_error(loc, f"{shown} must be a file in a class folder: CLASS/FILE", "value_error"))
        elif not target.is_file():
            errors.append(field_error(loc, f"{shown} is not a file under train_dir", "path_missing"))
    return errors


def _shown(user_path: str, limit: int = 120) -> str:
    """A user's path as a message quotes it: cut when longer than any sensible path."""
    return repr(user_path if len(user_path) <= limit else user_path[:limit] + "…")


def create_job(
    *,
    session: Session,
    spec: JobSpec,
    settings: Settings,
    owner: str = "default",
    idempotency_key: str | None = None,
    parent_id: uuid.UUID | None = None,
) -> tuple[Job, bool]:
    """Commit a queued job, then enqueue it. Returns (job, created); a repeated idempotency key returns the first job."""
    check_spec_in_context(spec=spec, settings=settings)
    check_init_from(session=session, spec=spec, owner=owner, settings=settings)
    digest = spec_hash(spec)
    if idempotency_key is not None:
        existing = _by_key(session, owner, idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
    _lock_tenant(session, owner)  # count and insert as one step: concurrent submits cannot both see room for one
    active = session.exec(
        select(func.count())
        .select_from(Job)
        .where(Job.owner == owner, Job.status.in_((JobStatus.queued.value, JobStatus.running.value)))
    ).one()
    if active >= settings.max_active_jobs_per_tenant:
        session.rollback()  # let the tenant's next submit in now
        raise LimitExceeded(
            f"tenant {owner!r} has {active} queued or running jobs; the limit "
            f"(max_active_jobs_per_tenant) is {settings.max_active_jobs_per_tenant}"
        )
    job = Job(
        owner=owner,
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        spec_hash=digest,
        idempotency_key=idempotency_key,
        parent_id=parent_id,
    )
    lifecycle.submit(session, job)
    try:
        session.commit()
    except IntegrityError:  # a concurrent request with the same key won
        session.rollback()
        existing = _by_key(session, owner, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, digest), False
    enqueue(session, job.id)
    session.refresh(job)
    return job, True


def _lock_tenant(session: Session, owner: str) -> None:
    """Hold the tenant's submit lock until this transaction ends. PostgreSQL: a transaction advisory lock on a
    hash of the tenant (other tenants go on). SQLite: the database write lock, taken by a write that changes
    nothing, before the count (SQLite has one writer at a time anyway; its reads do not wait for it)."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.blake2b(f"plateau.submit:{owner}".encode(), digest_size=8).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest, "big", signed=True)})
    else:
        session.execute(text("UPDATE jobs SET owner = owner WHERE 0 = 1"))


def _by_key(session: Session, owner: str, key: str) -> Job | None:
    return session.exec(select(Job).where(Job.owner == owner, Job.idempotency_key == key)).first()


def _replay(existing: Job, digest: str) -> Job:
    if existing.spec_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different spec")
    return existing


def get_job(*, session: Session, job_id: uuid.UUID, owner: str | None = None) -> Job:
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        raise NotFound(f"job {job_id}")
    return job


def encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = datetime.fromisoformat(created)
        # in UTC, as the column stores it: a date at the edge of the calendar overflows here, not in the query
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
        return moment, uuid.UUID(ident)
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the client's error
        raise InvalidField(
            [{"loc": ["query", "cursor"], "msg": "not a cursor this service issued", "type": "value_error"}]
        ) from exc


def list_jobs(
    *, session: Session, status: str | None, limit: int, cursor: str | None, owner: str | None = None
) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if owner is not None:
        query = query.where(Job.owner == owner)
    if cursor is not None:
        created, ident = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < ident)))
    rows = list(session.exec(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


_METRIC_COLUMNS = [c for c in EpochMetric.__table__.columns if c.name not in ("id", "job_id")]
_METRIC_NAMES = [c.name for c in _METRIC_COLUMNS]
_METRIC_JSON = [c.name for c in _METRIC_COLUMNS if isinstance(c.type, JSON)]


def list_metrics(*, session: Session, job: Job, after_epoch: int | None, limit: int) -> tuple[list[dict], int | None]:
    """Plain column dicts, not ORM objects: a page holds up to 1,000 rows and is only serialized.

    The JSON columns come back as text and are decoded in one call for the whole page, instead of
    one call per cell.
    """
    query = select(*[cast(c, Text).label(c.name) if c.name in _METRIC_JSON else c for c in _METRIC_COLUMNS])
    query = query.where(EpochMetric.job_id == job.id)
    if after_epoch is not None:
        query = query.where(EpochMetric.epoch > after_epoch)
    rows = [dict(zip(_METRIC_NAMES, r)) for r in session.execute(query.order_by(EpochMetric.epoch).limit(limit))]
    texts = [row[k] for row in rows for k in _METRIC_JSON]
    values = iter(from_json("[" + ",".join("null" if t is None else t for t in texts) + "]"))
    for row in rows:
        for k in _METRIC_JSON:
            row[k] = next(values)
    return rows, (rows[-1]["epoch"] if rows else after_epoch)


def epochs_finished(*, session: Session, job_ids: list[uuid.UUID], owner: str | None) -> dict[uuid.UUID, int]:
    """How many epochs each of `job_ids` has recorded (0 for none); jobs of other tenants, or unknown, are left out."""
    query = (
        select(Job.id, func.max(EpochMetric.epoch))
        .outerjoin(EpochMetric, EpochMetric.job_id == Job.id)
        .where(Job.id.in_(job_ids))
        .group_by(Job.id)
    )
    if owner is not None:
        query = query.where(Job.owner == owner)
    return {job_id: int(epoch or 0) for job_id, epoch in session.exec(query).all()}


def job_events(*, session: Session, job: Job) -> list[JobEvent]:
    return list(session.exec(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).all())


def job_children(*, session: Session, job: Job) -> list[uuid.UUID]:
    return list(session.exec(select(Job.id).where(Job.parent_id == job.id).order_by(Job.created_at)).all())


def cancel_job(*, session: Session, job: Job) -> Job:
    """Cancelling a job also cancels its queued and running probes."""
    from models import probes

    job = lifecycle.request_cancel(session, job)
    probes.cancel_for_job(session, job.id)
    session.refresh(job)
    return job


def ancestors(*, session: Session, job: Job, limit: int = 50) -> list[uuid.UUID]:
    chain, current = [], job
    while current.parent_id is not None and len(chain) < limit:
        chain.append(current.parent_id)
        current = session.get(Job, current.parent_id)
        if current is None:
            break
    return chain
