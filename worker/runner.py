"""One job, start to end: claim it, train it, record how it ended. Plain function; the Celery task only calls it."""

from __future__ import annotations

import os
import socket
import threading
import traceback
import uuid

import structlog
from sqlmodel import select

from contract.spec import JobSpec
from models.db import session_scope
from models.lifecycle import claim, finish, record_event, release
from models.settings import get_settings
from models.tables import EpochMetric, Job, JobStatus
from worker.db_sink import DbSink, db_retry
from worker.heartbeat import Heartbeat
from worker.training.errors import DataError, ModelError

log = structlog.get_logger()

# Set when the worker process is asked to shut down: the running job is handed back, not finished.
shutting_down = threading.Event()
_current_stop: threading.Event | None = None


def worker_host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def request_shutdown() -> None:
    shutting_down.set()
    if _current_stop is not None:
        _current_stop.set()


def run_job(job_id: str | uuid.UUID) -> str:
    """Returns how the job ended for this worker (for logs); outcomes live in the database."""
    # Every log line written in this thread while the job runs carries its job_id.
    with structlog.contextvars.bound_contextvars(job_id=str(job_id)):
        return _run_job(job_id)


def _run_job(job_id: str | uuid.UUID) -> str:
    global _current_stop
    settings = get_settings()
    job_id = uuid.UUID(str(job_id))
    host = worker_host()
    with session_scope() as s:
        taken = claim(
            s, job_id, worker_host=host, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts
        )
    if taken.job is None:
        log.info("job skipped", job_id=str(job_id), reason=taken.reason)
        if taken.reason != "no such job":
            DbSink(job_id).event("delivery_skipped", f"a worker received the job but skipped it: {taken.reason}")
        return f"skipped: {taken.reason}"
    job = taken.job
    log.info("job claimed", job_id=str(job_id), attempt=job.attempts, reason=taken.reason)
    workdir = settings.artifacts_dir.resolve() / str(job_id)
    _set_artifacts_dir(job_id, str(workdir))
    stop = threading.Event()
    _current_stop = stop
    if shutting_down.is_set():
        stop.set()
    beat = Heartbeat(
        job_id,
        worker_host=host,
        lease_seconds=settings.lease_seconds,
        poll_seconds=settings.cancel_poll_seconds,
        stop=stop,
    )
    beat.start()
    try:
        from worker.training.fit import train

        spec = JobSpec.model_validate(job.spec)  # its paths and webhook target were checked on submit
        result = train(
            spec,
            data_root=settings.data_root,
            workdir=workdir,
            sink=DbSink(job_id),
            stop=stop,
            release=shutting_down,
            history=_history(job_id),
        )
    except (DataError, ModelError) as exc:
        return _end(job_id, host, JobStatus.failed, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any crash is recorded on the job, and the worker keeps serving
        log.error("training crashed", job_id=str(job_id), error=traceback.format_exc())
        return _end(job_id, host, JobStatus.failed, error=f"internal error: {type(exc).__name__}: {exc}")
    finally:
        beat.close()
        _current_stop = None
    if beat.lost.is_set():
        return "lease lost: another worker owns the job"
    if result.status == "released":
        return _hand_back(job_id, host)
    status = JobStatus.cancelled if result.status == "cancelled" else JobStatus.succeeded
    return _end(job_id, host, status, stop_reason=result.stop_reason, model_path=result.model_path)


@db_retry
def _history(job_id: uuid.UUID) -> list[dict]:
    """Epochs recorded by earlier attempts, so in-training analysis sees the whole run after a resume."""
    with session_scope() as s:
        rows = s.exec(select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)).all()
        return [r.model_dump(exclude={"id", "job_id", "recorded_at"}) for r in rows]


@db_retry
def _set_artifacts_dir(job_id: uuid.UUID, path: str) -> None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        job.artifacts_dir = path
        s.add(job)
        s.commit()


@db_retry
def _end(job_id: uuid.UUID, host: str, status: JobStatus, **kw) -> str:
    with session_scope() as s:
        ended = finish(s, job_id, status, worker_host=host, **kw)
    log.info("job ended", job_id=str(job_id), status=status.value, recorded=ended, **kw)
    return status.value if ended else "ended, but the job was no longer ours"


@db_retry
def _hand_back(job_id: uuid.UUID, host: str) -> str:
    from models.broker import enqueue

    with session_scope() as s:
        if release(s, job_id, worker_host=host, reason="worker shut down; resumes from its last checkpoint"):
            enqueue(s, job_id, reason="released by a stopping worker")
            return "released"
        record_event(s, job_id, "warning", reason="release found the job no longer ours")
        s.commit()
    return "released (job was no longer ours)"
