"""Every job state change goes through `models.lifecycle`, and each one, through its after-transition hook,
leaves a state event and, in the same transaction, a webhook outbox row for a job that has a webhook (real
PostgreSQL; the rows are read from `webhook_deliveries`, which every process writes)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, update
from sqlmodel import select

from models import lifecycle
from models.db import session_scope
from models.tables import Job, JobEvent, JobStatus, WebhookDelivery, utcnow
from tests.specs import small_spec

HOOK = {"url": "https://hooks.example.com/plateau"}
HOST = "test-host:1"


class Staged:
    """The outbox rows staged since the test began, oldest first, as (job id, event, status, data)."""

    def __init__(self):
        with session_scope() as s:
            self.after = s.exec(select(func.max(WebhookDelivery.id))).one() or 0

    def rows(self) -> list[tuple[str, str, str | None, dict]]:
        with session_scope() as s:
            found = s.exec(
                select(WebhookDelivery).where(WebhookDelivery.id > self.after).order_by(WebhookDelivery.id)
            ).all()
            return [(str(r.job_id), r.event, r.body["status"], r.body["data"]) for r in found]

    def __getitem__(self, i):
        return self.rows()[i]

    def __len__(self) -> int:
        return len(self.rows())

    def __iter__(self):
        return iter(self.rows())

    def __eq__(self, other) -> bool:
        return self.rows() == other


@pytest.fixture
def sent(client):  # `client`: the app's startup migrates the database
    return Staged()


def new_job(webhook: dict | None = HOOK) -> uuid.UUID:
    with session_scope() as s:
        job = Job(
            owner="lifecycle-test", spec=small_spec(**({"webhook": webhook} if webhook else {})), spec_hash="0" * 64
        )
        lifecycle.submit(s, job)
        s.commit()
        return job.id


def states(job_id: uuid.UUID) -> list[tuple[str | None, str | None]]:
    with session_scope() as s:
        rows = s.exec(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "state").order_by(JobEvent.id)
        ).all()
        return [(e.from_status, e.to_status) for e in rows]


def claim(job_id: uuid.UUID, max_attempts: int = 3) -> lifecycle.Claim:
    with session_scope() as s:
        return lifecycle.claim(s, job_id, worker_host=HOST, lease_seconds=60, max_attempts=max_attempts)


def lapse_lease(job_id: uuid.UUID, cancel: bool = False) -> Job:
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_until=utcnow() - timedelta(seconds=5), cancel_requested=cancel)
        )
        s.commit()
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def test_submit_claim_finish(sent):
    job_id = new_job()
    assert claim(job_id).job is not None
    with session_scope() as s:
        assert lifecycle.finish(s, job_id, JobStatus.succeeded, worker_host=HOST, stop_reason="epochs done")
    assert states(job_id) == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    j = str(job_id)
    assert sent == [
        (j, "queued", "queued", {}),
        (j, "running", "running", {"attempt": 1, "reason": "started"}),
        (j, "succeeded", "succeeded", {"stop_reason": "epochs done"}),
    ]


def test_attempt_limit_fails_the_job(sent):
    job_id = new_job()
    claim(job_id)
    lapse_lease(job_id)
    taken = claim(job_id, max_attempts=1)
    assert taken.job is None and taken.reason == "attempt limit reached"
    assert states(job_id)[-1] == ("running", "failed")
    assert sent[-1][1:3] == ("failed", "failed") and "gave up after 1 attempts" in sent[-1][3]["error"]


def test_release_hands_the_job_back(sent):
    job_id = new_job()
    claim(job_id)
    with session_scope() as s:
        assert lifecycle.release(s, job_id, worker_host=HOST, reason="worker shut down")
    assert states(job_id)[-1] == ("running", "queued")
    assert sent[-1] == (str(job_id), "queued", "queued", {"reason": "worker shut down"})


def test_cancel_queued_running_and_lapsed(sent):
    queued = new_job()
    with session_scope() as s:
        lifecycle.request_cancel(s, s.get(Job, queued))
    assert states(queued)[-1] == ("queued", "cancelled") and sent[-1][:2] == (str(queued), "cancelled")

    running = new_job()
    claim(running)
    before = len(sent)
    with session_scope() as s:  # a live lease: flagged only, the worker ends it (and that end is its transition)
        job = lifecycle.request_cancel(s, s.get(Job, running))
        assert job.status == "running" and job.cancel_requested
    assert states(running)[-1] == ("queued", "running") and len(sent) == before
    lapse_lease(running, cancel=True)
    with session_scope() as s:
        assert lifecycle.request_cancel(s, s.get(Job, running)).status == "cancelled"
    assert states(running)[-1] == ("running", "cancelled") and sent[-1][:3] == (str(running), "cancelled", "cancelled")
    with session_scope() as s, pytest.raises(lifecycle.IllegalTransition):
        lifecycle.request_cancel(s, s.get(Job, running))


def test_recover_expired_requeues_or_cancels(sent):
    lost = new_job()
    claim(lost)
    with session_scope() as s:
        assert lifecycle.recover_expired(s, lapse_lease(lost)) == "requeued"
    assert states(lost)[-1] == ("running", "queued") and sent[-1][:3] == (str(lost), "queued", "queued")
    with session_scope() as s:  # nothing left to recover: a second reconciler pass changes nothing
        assert lifecycle.recover_expired(s, lapse_lease(lost)) is None

    cancelled = new_job()
    claim(cancelled)
    with session_scope() as s:
        assert lifecycle.recover_expired(s, lapse_lease(cancelled, cancel=True)) == "cancelled"
    assert states(cancelled)[-1] == ("running", "cancelled")
    assert sent[-1][:3] == (str(cancelled), "cancelled", "cancelled")


def test_findings_are_sent_and_other_events_are_not(sent):
    job_id = new_job()
    with session_scope() as s:
        lifecycle.record_event(s, job_id, "finding", reason="val_loss plateaued", data={"rule": "plateau"})
        lifecycle.record_event(s, job_id, "lr_reduced", reason="cut")
        s.commit()
    assert sent[-1] == (
        str(job_id),
        "finding",
        "queued",
        {"reason": "val_loss plateaued", "finding": {"rule": "plateau"}},
    )
    assert [e[1] for e in sent] == ["queued", "finding"]


def test_no_webhook_no_send_and_rollback_sends_nothing(sent):
    plain = new_job(webhook=None)
    claim(plain)
    assert states(plain) == [(None, "queued"), ("queued", "running")] and sent == []
    job_id = new_job()
    with session_scope() as s:
        lifecycle.request_cancel(s, s.get(Job, job_id))  # commits: sent
        job = Job(owner="lifecycle-test", spec=small_spec(webhook=HOOK), spec_hash="0" * 64)
        lifecycle.submit(s, job)
        s.rollback()  # the new job and its event are gone: so is its send
    assert [e[1] for e in sent] == ["queued", "cancelled"]
