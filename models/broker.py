"""The broker, as both processes see it: the Celery app's configuration and sending a job to the workers.

The API sends with a producer app built here; the worker runs `worker.celery_app`, built from the same
configuration plus its task module. The database is the source of truth: callers commit the job row first."""

from __future__ import annotations

import uuid
from pathlib import Path

from celery import Celery
from sqlalchemy import update
from sqlmodel import Session

from models.broker_files import REJECTED
from models.lifecycle import record_event
from models.settings import Settings, get_settings
from models.tables import Job, JobStatus, utcnow

TRAIN_TASK = "plateau.train"


def filesystem_broker_folder(settings: Settings) -> Path:
    """The filesystem broker's folder with its queue, processed, control and rejected subfolders, created if
    missing (also after someone deleted them: the reconciler re-sends what was lost)."""
    folder = settings.broker_dir.resolve()
    for sub in ("queue", "processed", "control", REJECTED):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def broker_options(settings: Settings) -> dict:
    if settings.broker_url.startswith("filesystem://"):
        folder = filesystem_broker_folder(settings)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            # kombu's default is ./control in the current directory: keep every piece of broker state here
            "control_folder": str(folder / "control"),
        }
    # Redis redelivers a task nobody acknowledged within this window: keep it above the longest job.
    return {"visibility_timeout": settings.visibility_timeout, **settings.broker_transport_options}


def make_celery(settings: Settings | None = None, include: tuple[str, ...] = ()) -> Celery:
    settings = settings or get_settings()
    app = Celery("plateau", broker=settings.broker_url, include=list(include))
    if settings.broker_url.startswith("filesystem://"):
        # kombu's filesystem transport, with atomic writes and undecodable files set aside
        app.conf.broker_transport = "models.broker_files:Transport"
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,  # the database, not a result backend, holds outcomes
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a killed worker's task goes back; the DB attempt counter stops loops
        worker_prefetch_multiplier=1,
        # Redis only: fetch a message only when the pool is free, so no second job waits inside a busy worker.
        worker_disable_prefetch=settings.broker_url.startswith(("redis://", "rediss://")),
        worker_pool="solo",  # TensorFlow is not fork-safe
        worker_concurrency=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_routes={TRAIN_TASK: {"queue": settings.queue}},
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


_producers: dict[tuple[str, str, str], Celery] = {}


def producer(settings: Settings | None = None) -> Celery:
    """The app that sends tasks: one per broker configuration, so a process whose settings change gets its own."""
    settings = settings or get_settings()
    key = (settings.broker_url, settings.queue, str(settings.broker_dir))
    if key not in _producers:
        _producers[key] = make_celery(settings)
    return _producers[key]


def enqueue(session: Session, job_id: uuid.UUID, *, reason: str = "submitted") -> bool:
    """Send `train(job_id)`; on broker failure the job stays queued for the reconciler to send later."""
    try:
        producer().send_task(
            TRAIN_TASK,
            args=[str(job_id)],
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:  # noqa: BLE001 - any broker error leaves the job for the reconciler
        record_event(session, job_id, "enqueue_failed", reason=f"broker unavailable ({type(exc).__name__}); will retry")
        session.commit()
        return False
    session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.queued.value).values(enqueued_at=utcnow())
    )
    record_event(session, job_id, "enqueued", reason=reason)
    session.commit()
    return True
