"""A worker paused past its lease (a VM pause, a swap storm) wakes up to find its job cancelled or requeued:
it writes nothing more about that job — no epoch row, no event, no finding — and takes the next job as usual
(real worker process, PostgreSQL + Redis; SIGSTOP and SIGCONT)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import datetime

import httpx
import pytest
from sqlmodel import Session, select

from models.db import make_engine
from models.lifecycle import recover_expired
from models.tables import EpochMetric, Job, JobEvent, utcnow
from tests.flows import TERMINAL, wait_epochs, wait_status
from tests.procs import start_api, start_worker, wait_for
from tests.specs import running_spec, small_spec
from tests.test_faults import base_env

pytestmark = pytest.mark.slow

LEASE = 4.0
TASK_DONE = "succeeded in"  # Celery's line when a task returns, whatever the job's outcome


def written(db, job_id: str) -> tuple[list, list]:
    """Every epoch row (with when it was written) and every event of the job."""
    with Session(db) as s:
        rows = s.exec(select(EpochMetric.epoch, EpochMetric.recorded_at).where(EpochMetric.job_id == job_id)).all()
        events = s.exec(
            select(JobEvent.id, JobEvent.at, JobEvent.kind, JobEvent.to_status).where(JobEvent.job_id == job_id)
        ).all()
        return sorted(rows), sorted(events)


def pause_past_lease(worker) -> None:
    worker.kill(signal.SIGSTOP)
    time.sleep(LEASE + 1.5)


def wake_and_wait(worker, tasks_done: int) -> None:
    """SIGCONT, then until the stale run has returned (its task ended) and a little more."""
    worker.kill(signal.SIGCONT)
    wait_for(lambda: worker.tail(1_000_000).count(TASK_DONE) >= tasks_done, 120, worker.tail)
    time.sleep(2)  # anything the woken run still meant to write has had its chance


def test_a_paused_worker_writes_nothing_after_its_job_was_cancelled_or_requeued(tmp_path):
    env = base_env(
        tmp_path,
        PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"],
        PLATEAU_LEASE_SECONDS=str(LEASE),
        # the test requeues the job itself, and nobody sends it again: its 'queued' phase lasts as long as we look
        PLATEAU_RECONCILE_INTERVAL="3600",
    )
    db = make_engine(env["PLATEAU_DATABASE_URL"])
    api_proc, url = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            # 1. cancelled while the worker sleeps: the cancel takes effect at once, as the lease has lapsed
            cancelled = api.post("/jobs", json=running_spec(epochs=40, name="cancelled")).json()["id"]
            wait_epochs(api, cancelled, 1, 300, worker.tail)
            pause_past_lease(worker)
            job = api.post(f"/jobs/{cancelled}/cancel").json()
            assert job["status"] == "cancelled", job
            finished_at = api.get(f"/jobs/{cancelled}").json()["finished_at"]
            before = written(db, cancelled)
            wake_and_wait(worker, 1)
            rows, events = written(db, cancelled)
            assert rows == before[0], "an epoch row was written after the job was cancelled"
            assert events == before[1], [e for e in events if e not in before[1]]
            ended = datetime.fromisoformat(finished_at)
            assert all(at <= ended for _, at in rows), rows
            # the cancel's own state event is stamped a moment after finished_at; nothing else comes later
            assert all(at <= ended for _, at, kind, to in events if (kind, to) != ("state", "cancelled")), events
            after = api.get(f"/jobs/{cancelled}").json()
            assert after["status"] == "cancelled" and after["finished_at"] == finished_at, after

            # 2. requeued (lease expired, no cancel) while the worker sleeps: nothing written while it is queued
            requeued = api.post("/jobs", json=running_spec(epochs=40, name="requeued")).json()["id"]
            wait_epochs(api, requeued, 1, 300, worker.tail)
            pause_past_lease(worker)
            with Session(db) as s:
                assert recover_expired(s, s.get(Job, uuid.UUID(requeued))) == "requeued"
            requeued_at = utcnow()
            before = written(db, requeued)
            wake_and_wait(worker, 2)
            rows, events = written(db, requeued)
            assert rows == before[0], "an epoch row was written while the job was queued"
            assert events == before[1], [e for e in events if e not in before[1]]
            assert all(at <= requeued_at for _, at in rows)
            job = api.get(f"/jobs/{requeued}").json()
            assert job["status"] == "queued" and job["attempts"] == 1, job
            assert worker.tail(1_000_000).count("job abandoned") == 2

            # 3. the worker goes on serving: the next job trains to the end
            nxt = api.post("/jobs", json=small_spec(epochs=1, name="next")).json()["id"]
            done = wait_status(api, nxt, TERMINAL, 400, worker.tail)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            assert api.post(f"/jobs/{requeued}/cancel").json()["status"] == "cancelled"
    finally:
        worker.kill(signal.SIGCONT)
        worker.stop()
        api_proc.stop()
        db.dispose()
