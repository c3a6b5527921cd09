"""Celery tasks: ids in, plain functions do the work."""

from __future__ import annotations

from celery.signals import worker_ready, worker_shutting_down

from models.broker import TRAIN_TASK
from models.db import prepare_database
from models.probes import PROBE_TASK
from models.settings import get_settings
from worker.celery_app import app
from worker.runner import request_shutdown, run_job


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train(job_id: str) -> str:
    """Train one job; idempotent, since a job can only be claimed by one worker at a time."""
    return run_job(job_id)


@app.task(name=PROBE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def probe(probe_id: str) -> str:
    """Run one probe on a copy of its job; idempotent, since a probe can only be claimed by one worker at a time."""
    from worker.probes.run import run_probe

    return run_probe(probe_id)


@worker_ready.connect
def _start_reconciler(**_: object) -> None:
    from worker.reconciler import Reconciler

    prepare_database()
    if get_settings().reconcile_in_worker:  # the embedded launcher runs its own, alive even while this worker is not
        Reconciler(get_settings().reconcile_interval).start()
    from models.webhooks.sender import start_sender

    start_sender()  # delivers the webhook outbox, whichever process staged the rows


@worker_shutting_down.connect
def _release_running_job(**_: object) -> None:
    # Runs in Celery's SIGTERM handler: stop training at the next batch and hand the job back.
    request_shutdown()
