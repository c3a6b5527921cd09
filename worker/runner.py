"""One job, start to end: claim it, train it, record how it ended. Plain function; the Celery task only calls it."""

from __future__ import annotations

import errno
import gc
import os
import socket
import threading
import traceback
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import update
from sqlmodel import select

from contract.spec import JobSpec
from models import artifacts
from models.db import session_scope
from models.lifecycle import Fence, LostJob, claim, finish, hold, infra_release, record_event, release
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
            _note_skipped(job_id, f"a worker received the job but skipped it: {taken.reason}")
        return f"skipped: {taken.reason}"
    job = taken.job
    fence = Fence(job_id, job.attempts, host)  # every write below carries it; a refused one ends this run
    log.info("job claimed", job_id=str(job_id), attempt=job.attempts, reason=taken.reason)
    workdir = settings.artifacts_dir.resolve() / str(job_id)
    stop = threading.Event()
    _current_stop = stop
    if shutting_down.is_set():
        stop.set()
    beat = Heartbeat(fence, lease_seconds=settings.lease_seconds, poll_seconds=settings.cancel_poll_seconds, stop=stop)
    beat.start()
    try:
        _set_artifacts_dir(fence, str(workdir))
        _check_space(workdir)
        from worker.training.fit import train

        spec = JobSpec.model_validate(job.spec)  # its paths and webhook target were checked on submit
        result = train(
            spec,
            data_root=settings.data_root,
            workdir=workdir,
            sink=DbSink(fence),
            stop=stop,
            release=shutting_down,
            history=_history(job_id),
        )
    except LostJob as exc:
        return _abandon(fence, exc)
    except (DataError, ModelError) as exc:
        return _end(fence, JobStatus.failed, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any crash is recorded on the job, and the worker keeps serving
        full = artifacts.disk_full(exc)
        if full is None:
            log.error("training crashed", job_id=str(job_id), error=traceback.format_exc())
            return _end(fence, JobStatus.failed, error=f"internal error: {type(exc).__name__}: {exc}")
        # Only words leave this block: the error's frames hold the failed writer's open file (h5py), and with
        # it the deleted partial file's blocks, until they are collected below.
        result = DiskFull(getattr(full, "filename", None) or str(workdir), str(full)[:500])
        del full
    finally:
        beat.close()
        _current_stop = None
    if isinstance(result, DiskFull):
        gc.collect()
        return _disk_full(fence, workdir, result)
    if beat.lost.is_set():
        return _abandon(fence, LostJob("the lease was taken from this attempt"))
    if result.status == "released":
        return _hand_back(fence)
    status = JobStatus.cancelled if result.status == "cancelled" else JobStatus.succeeded
    return _end(fence, status, stop_reason=result.stop_reason, model_path=result.model_path)


def _abandon(fence: Fence, exc: LostJob) -> str:
    """Another claim, a cancel or a requeue took the job from this attempt: write nothing more about it."""
    log.warning("job abandoned: it is no longer this attempt's", attempt=fence.attempt, reason=str(exc))
    return "abandoned: the job is no longer this attempt's"


def _check_space(workdir) -> None:
    """A resumed job whose volume cannot hold its next checkpoint goes back at once, before any training."""
    need, free = artifacts.checkpoint_bytes(workdir), artifacts.free_bytes(workdir)
    if need and free < need:
        raise OSError(errno.ENOSPC, f"{artifacts.human_bytes(need)} needed for the next checkpoint", str(workdir))


@db_retry
def _history(job_id: uuid.UUID) -> list[dict]:
    """Epochs recorded by earlier attempts, so in-training analysis sees the whole run after a resume."""
    with session_scope() as s:
        rows = s.exec(select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)).all()
        return [r.model_dump(exclude={"id", "job_id", "recorded_at"}) for r in rows]


@db_retry
def _note_skipped(job_id: uuid.UUID, reason: str) -> None:
    """About a message, not a job this worker holds: so written without a fence."""
    with session_scope() as s:
        record_event(s, job_id, "delivery_skipped", reason=reason)
        s.commit()


@db_retry
def _set_artifacts_dir(fence: Fence, path: str) -> None:
    with session_scope() as s:
        hold(s, fence)
        s.execute(update(Job).where(Job.id == fence.job_id).values(artifacts_dir=path))
        s.commit()


@db_retry
def _end(fence: Fence, status: JobStatus, **kw) -> str:
    job_id = fence.job_id
    with session_scope() as s:
        ended = finish(s, job_id, status, worker_host=fence.worker_host, attempt=fence.attempt, **kw)
    log.info("job ended", job_id=str(job_id), status=status.value, recorded=ended, **kw)
    return status.value if ended else "ended, but the job was no longer ours"


@db_retry
def _hand_back(fence: Fence) -> str:
    from models.broker import enqueue

    with session_scope() as s:
        reason = "worker shut down; resumes from its last checkpoint"
        if release(s, fence.job_id, worker_host=fence.worker_host, attempt=fence.attempt, reason=reason):
            enqueue(s, fence.job_id, reason="released by a stopping worker")
            return "released"
    log.warning("release found the job no longer ours; nothing written")
    return "released (job was no longer ours)"


@dataclass(frozen=True)
class DiskFull:
    path: str
    error: str


@db_retry
def _disk_full(fence: Fence, workdir, full: DiskFull) -> str:
    """The artifacts volume is full: an infrastructure fault, not the job's (see `infra_release`)."""
    removed = artifacts.remove_partials(workdir)
    free = artifacts.free_bytes(workdir)
    with session_scope() as s:
        outcome = infra_release(
            s,
            fence,
            kind="artifacts_disk_full",
            what=f"artifacts disk full writing {full.path} ({artifacts.human_bytes(free)} free)",
            data={"path": full.path, "free_bytes": free, "error": full.error},
            limit=get_settings().max_infra_retries,
        )
    log.warning(
        "artifacts disk full", path=full.path, free_bytes=free, outcome=outcome, removed=[str(p) for p in removed]
    )
    return f"artifacts disk full: {outcome}"
