"""Fenced writes: once a worker's attempt no longer owns its job (the lease lapsed and the job was requeued,
cancelled or claimed again), the database refuses every write that attempt makes about the job — on
PostgreSQL and on the embedded default's SQLite file alike."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import func, select

from models import lifecycle
from models.db import session_scope
from models.lifecycle import Fence, LostJob
from models.tables import EpochMetric, Job, JobEvent, JobStatus, utcnow
from tests.specs import small_spec
from tests.sqlite_app import sqlite_client
from worker.db_sink import DbSink

HOST = "fence-host:1"


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    if request.param == "postgresql":
        request.getfixturevalue("client")  # the app's startup migrated the session's database
        yield "postgresql"
    else:
        with sqlite_client(tmp_path):
            yield "sqlite"


def new_job() -> uuid.UUID:
    with session_scope() as s:
        job = Job(owner="fencing-test", spec=small_spec(), spec_hash="0" * 64)
        lifecycle.submit(s, job)
        s.commit()
        return job.id


def claimed(job_id: uuid.UUID, host: str = HOST) -> Fence:
    with session_scope() as s:
        taken = lifecycle.claim(s, job_id, worker_host=host, lease_seconds=60, max_attempts=5)
    assert taken.job is not None, taken.reason
    return Fence(job_id, taken.job.attempts, host)


def lapse(job_id: uuid.UUID) -> Job:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=5)))
        s.commit()
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def written(job_id: uuid.UUID) -> tuple[int, int]:
    """Epoch rows and events of the job."""
    with session_scope() as s:
        epochs = s.exec(select(func.count()).where(EpochMetric.job_id == job_id)).one()
        events = s.exec(select(func.count()).where(JobEvent.job_id == job_id)).one()
        return epochs, events


def job_row(job_id: uuid.UUID) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def assert_every_write_refused(stale: Fence) -> None:
    job_id = stale.job_id
    before, row_before = written(job_id), job_row(job_id)
    with session_scope() as s, pytest.raises(LostJob):
        lifecycle.upsert_epoch(s, job_id, {"epoch": 1, "loss": 0.5}, fence=stale)
    with session_scope() as s, pytest.raises(LostJob):
        lifecycle.record_event(s, job_id, "finding", reason="val_loss plateaued", data={"rule": "plateau"}, fence=stale)
        s.commit()
    sink = DbSink(stale)
    with pytest.raises(LostJob):
        sink.class_counts({"train": {"a": 1}})
    with pytest.raises(LostJob):
        sink.event("lr_reduced", "learning rate 1e-3 → 1e-4")  # refused at once: the sink knows it lost the job
    with session_scope() as s:
        assert not lifecycle.finish(
            s, job_id, JobStatus.succeeded, worker_host=stale.worker_host, attempt=stale.attempt, stop_reason="done"
        )
    with session_scope() as s:
        assert not lifecycle.release(s, job_id, worker_host=stale.worker_host, attempt=stale.attempt, reason="bye")
    with session_scope() as s:
        renewed = lifecycle.renew_lease(
            s, job_id, worker_host=stale.worker_host, attempt=stale.attempt, lease_seconds=60
        )
        assert renewed is None
    assert written(job_id) == before
    after = job_row(job_id)
    assert (after.status, after.attempts, after.lease_until, after.class_counts, after.finished_at) == (
        row_before.status,
        row_before.attempts,
        row_before.lease_until,
        row_before.class_counts,
        row_before.finished_at,
    )


def test_a_requeued_jobs_old_attempt_writes_nothing(database):
    job_id = new_job()
    first = claimed(job_id)
    with session_scope() as s:
        lifecycle.upsert_epoch(s, job_id, {"epoch": 1, "loss": 0.9}, fence=first)  # while it holds the job
    with session_scope() as s:
        assert lifecycle.recover_expired(s, lapse(job_id)) == "requeued"
    assert job_row(job_id).status == "queued"
    assert_every_write_refused(first)


def test_a_cancelled_jobs_old_attempt_writes_nothing(database):
    job_id = new_job()
    first = claimed(job_id)
    lapse(job_id)
    with session_scope() as s:
        assert lifecycle.request_cancel(s, s.get(Job, job_id)).status == "cancelled"
    assert_every_write_refused(first)


def test_the_same_host_claiming_again_fences_off_its_earlier_attempt(database):
    """Same worker host, status running again: only the attempt number tells the stale run from the new one."""
    job_id = new_job()
    first = claimed(job_id)
    with session_scope() as s:
        assert lifecycle.recover_expired(s, lapse(job_id)) == "requeued"
    second = claimed(job_id)
    assert (second.attempt, second.worker_host) == (first.attempt + 1, first.worker_host)
    assert_every_write_refused(first)
    sink = DbSink(second)
    sink.epoch({"epoch": 1, "loss": 0.7})
    sink.event("finding", "val_loss plateaued", {"rule": "plateau"})
    with session_scope() as s:
        assert lifecycle.finish(
            s, job_id, JobStatus.succeeded, worker_host=HOST, attempt=second.attempt, stop_reason="epochs done"
        )
    done = job_row(job_id)
    assert done.status == "succeeded" and done.attempts == 2


def test_a_lease_taken_over_by_another_worker_fences_off_the_first(database):
    job_id = new_job()
    first = claimed(job_id)
    lapse(job_id)
    second = claimed(job_id, host="other-host:2")  # a running job whose lease lapsed is claimed directly
    assert second.attempt == first.attempt + 1
    assert_every_write_refused(first)
    with session_scope() as s:
        lifecycle.upsert_epoch(s, job_id, {"epoch": 1, "loss": 0.7}, fence=second)
    assert written(job_id)[0] == 1
