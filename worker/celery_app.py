"""The worker's Celery app: the shared broker configuration (`models.broker`) plus its task module."""

from __future__ import annotations

import os

from celery.signals import worker_init

from models.broker import make_celery
from models.logs import configure_logging


@worker_init.connect
def _watch_launcher(**_: object) -> None:
    # Set by the embedded launcher: this worker must not outlive it.
    parent = os.environ.get("PLATEAU_PARENT_PID")
    if parent and parent.isdigit():
        from worker.parent_watch import watch_parent

        watch_parent(int(parent))


configure_logging()
app = make_celery(include=("worker.tasks",))
