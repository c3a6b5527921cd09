"""The Celery app, configured for long GPU tasks (late acks, one task at a time, a solo pool)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

from models.logs import configure_logging
from models.settings import Settings, get_settings

TRAIN_TASK = "plateau.train"


def broker_options(settings: Settings) -> dict:
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_dir.resolve()
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "processed").mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(parents=True, exist_ok=True)
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


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("plateau", broker=settings.broker_url, include=["worker.tasks"])
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


@worker_init.connect
def _watch_launcher(**_: object) -> None:
    # Set by the embedded launcher: this worker must not outlive it.
    parent = os.environ.get("PLATEAU_PARENT_PID")
    if parent and parent.isdigit():
        from worker.parent_watch import watch_parent

        watch_parent(int(parent))


configure_logging()
app = make_celery()
