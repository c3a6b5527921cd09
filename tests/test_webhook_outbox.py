"""The webhook outbox: a delivery row commits with the change it reports, and the sender delivers it at least once
— after a sender is killed mid-delivery, past a receiver that never answers, and in bursts far above what an
in-memory queue held (real PostgreSQL, the SQLite file of the embedded default, real HTTP receivers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlmodel import select

from models import lifecycle
from models.db import session_scope
from models.tables import Job, WebhookDelivery
from models.webhooks import outbox
from models.webhooks import verify as verify_signature
from models.webhooks.sender import Sender
from tests.specs import small_spec
from tests.sqlite_app import sqlite_client
from tests.test_webhooks import SECRET, Receiver, settings


def submit(url: str | None, *, owner: str = "outbox-test", events: list[str] | None = None) -> uuid.UUID:
    webhook = {"url": url, **({"events": events} if events else {})} if url else None
    with session_scope() as s:
        job = Job(owner=owner, spec=small_spec(**({"webhook": webhook} if webhook else {})), spec_hash="0" * 64)
        lifecycle.submit(s, job)
        s.commit()
        return job.id


def rows_of(job_id: uuid.UUID) -> list[WebhookDelivery]:
    with session_scope() as s:
        return list(
            s.exec(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.id))
        )


def wait_until(check, timeout: float, what) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(what() if callable(what) else what)
        time.sleep(0.05)
    return time.monotonic() - started


def delivered(job_id: uuid.UUID) -> bool:
    return all(r.state == outbox.DELIVERED for r in rows_of(job_id)) and bool(rows_of(job_id))


@pytest.fixture(autouse=True)
def _quiet_outbox(client):  # `client`: the app's startup migrates; other tests' rows must not reach these senders
    with session_scope() as s:
        for row in s.exec(select(WebhookDelivery).where(WebhookDelivery.state.in_((outbox.PENDING, outbox.SENDING)))):
            row.state = outbox.DEAD
            s.add(row)
        s.commit()


def test_the_row_commits_with_the_transition_and_a_rollback_leaves_none():
    with Receiver() as rx:
        job_id = submit(rx.url, events=["queued", "cancelled"])
        with session_scope() as s:
            lifecycle.claim(s, job_id, worker_host="h:1", lease_seconds=60, max_attempts=3)  # "running": not wanted
            job = Job(owner="outbox-test", spec=small_spec(webhook={"url": rx.url}), spec_hash="0" * 64)
            lifecycle.submit(s, job)
            s.flush()
            assert s.exec(select(WebhookDelivery).where(WebhookDelivery.job_id == job.id)).first() is not None
            s.rollback()
        assert rows_of(job.id) == []
    (row,) = rows_of(job_id)
    assert row.event == "queued" and row.state == outbox.PENDING and row.body["status"] == "queued"
    assert row.owner == "outbox-test" and row.target == f"http://127.0.0.1:{rx.server.server_address[1]}"
    assert rows_of(submit(None)) == []  # no webhook, no row


def test_a_row_held_by_a_killed_sender_is_delivered_by_the_next(tmp_path: Path):
    """The process that staged the event is gone, and so is the sender that had claimed it: nothing was in memory
    only, so a new sender delivers it once the dead one's lease lapses, with the same delivery id."""
    hold = threading.Event()
    with Receiver(hold=hold) as rx:
        job_id = submit(rx.url)
        script = textwrap.dedent(
            f"""
            import time
            from models.settings import Settings
            from models.webhooks.sender import Sender
            Sender(settings=Settings(webhook_allow_private=True, webhook_secret={SECRET!r}), lease_seconds=2).start()
            time.sleep(120)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1], env=os.environ.copy())
        try:
            wait_until(lambda: rx.arrived >= 1, 60, "the first sender never reached the receiver")
            (row,) = rows_of(job_id)
            assert row.state == outbox.SENDING
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
        rx.hold = None
        hold.set()  # the receiver answers again
        sender = Sender(settings=settings(), poll_seconds=0.1).start()
        try:
            waited = wait_until(lambda: delivered(job_id), 30, lambda: rows_of(job_id))
        finally:
            sender.stop()
    (row,) = rows_of(job_id)
    assert row.attempts == 1 and row.delivered_at is not None and waited < 15
    assert {h["x-plateau-delivery"] for h, _ in rx.requests} == {row.delivery_id}  # a repeat keeps its id
    headers, raw = rx.requests[-1]
    assert verify_signature(SECRET, raw, headers["x-plateau-signature"]) and json.loads(raw)["event"] == "queued"


def test_a_receiver_that_never_answers_does_not_delay_another_tenant():
    hold = threading.Event()
    with Receiver(hold=hold) as dead, Receiver() as alive:
        stuck = [submit(dead.url, owner="tenant-stuck") for _ in range(6)]
        other = submit(alive.url, owner="tenant-other")
        sender = Sender(settings=settings(webhook_timeout_seconds=30), workers=4, per_target=2, poll_seconds=0.1)
        sender.start()
        try:
            waited = wait_until(lambda: delivered(other), 10, lambda: rows_of(other))
            assert waited < 3, waited
            assert not any(delivered(j) for j in stuck)
            in_flight = sum(r.state == outbox.SENDING for j in stuck for r in rows_of(j))
            assert in_flight == 2  # the stuck target holds its two slots, no more
        finally:
            hold.set()
            sender.stop()
    assert len(alive.requests) == 1


def test_a_tenant_with_many_dead_receivers_holds_only_its_share():
    """Per-target slots alone would let one tenant fill the pool with several dead receivers of its own."""
    hold = threading.Event()
    with Receiver(hold=hold) as dead_a, Receiver(hold=hold) as dead_b, Receiver() as alive:
        stuck = [submit(url, owner="tenant-greedy") for url in (dead_a.url, dead_b.url) for _ in range(3)]
        other = submit(alive.url, owner="tenant-other")
        sender = Sender(
            settings=settings(webhook_timeout_seconds=30), workers=4, per_target=2, per_owner=2, poll_seconds=0.1
        )
        sender.start()
        try:
            assert wait_until(lambda: delivered(other), 10, lambda: rows_of(other)) < 3
            assert sum(r.state == outbox.SENDING for j in stuck for r in rows_of(j)) == 2
        finally:
            hold.set()
            sender.stop()


def test_failed_tries_back_off_and_end_dead():
    with Receiver([500, 200]) as flaky, Receiver([503] * 10) as broken:
        ok, bad = submit(flaky.url), submit(broken.url)
        sender = Sender(settings=settings(webhook_max_attempts=3, webhook_backoff_seconds=0.2), poll_seconds=0.05)
        sender.start()
        try:
            wait_until(lambda: delivered(ok) and rows_of(bad)[0].state == outbox.DEAD, 20, lambda: rows_of(bad))
        finally:
            sender.stop()
    (good,), (dead,) = rows_of(ok), rows_of(bad)
    assert good.attempts == 2 and good.last_status == 200
    assert dead.attempts == 3 and dead.last_status == 503 and "503" in dead.last_error
    assert len(broken.requests) == 3 and {h["x-plateau-delivery"] for h, _ in broken.requests} == {dead.delivery_id}


@pytest.mark.parametrize("senders", [2])
def test_a_burst_of_1100_events_is_delivered_whole_and_once(senders):
    """The in-memory queue held 1,000 events and dropped the rest (1,100 here); the outbox keeps them all. Two senders share
    the rows (SKIP LOCKED claims on PostgreSQL): every event arrives, none twice."""
    with Receiver() as rx:
        job_id = submit(rx.url, events=["finding"])
        with session_scope() as s:
            for i in range(1100):
                lifecycle.record_event(s, job_id, "finding", reason=f"finding {i}", data={"i": i})
            s.commit()
        running = [
            Sender(settings=settings(), workers=8, per_target=8, per_owner=8, poll_seconds=0.05).start()
            for _ in range(senders)
        ]
        try:
            wait_until(lambda: len(rx.requests) >= 1100, 240, lambda: f"{len(rx.requests)} of 1100 delivered")
            time.sleep(0.5)
        finally:
            for sender in running:
                sender.stop()
    ids = [h["x-plateau-delivery"] for h, _ in rx.requests]
    assert len(ids) == 1100 and len(set(ids)) == 1100
    assert sorted(json.loads(raw)["data"]["finding"]["i"] for _, raw in rx.requests) == list(range(1100))


def test_the_embedded_sqlite_outbox_is_claimed_and_delivered(tmp_path: Path):
    with sqlite_client(tmp_path), Receiver() as rx:
        jobs = [submit(rx.url) for _ in range(20)]
        with session_scope() as s:
            first = outbox.claim(s, limit=5, lease_seconds=60)
            again = outbox.claim(s, limit=50, lease_seconds=60)  # the first five are leased: not taken twice
        assert len(first) == 5 and len(again) == 15 and not {r.id for r in first} & {r.id for r in again}
        with session_scope() as s:
            for row in first + again:
                s.get(WebhookDelivery, row.id).state = outbox.PENDING
            s.commit()
        sender = Sender(settings=settings(), poll_seconds=0.05).start()
        try:
            wait_until(lambda: all(delivered(j) for j in jobs), 30, "not all delivered on SQLite")
        finally:
            sender.stop()
        assert len(rx.requests) == 20


def test_api_and_worker_transitions_are_staged(client):
    job = client.post("/jobs", json={**small_spec(), "webhook": {"url": "https://hooks.example.com/plateau"}}).json()
    client.post(f"/jobs/{job['id']}/cancel")
    plain = client.post("/jobs", json=small_spec()).json()
    client.post(f"/jobs/{plain['id']}/cancel")
    assert [r.event for r in rows_of(uuid.UUID(job["id"]))] == ["queued", "cancelled"]
    assert rows_of(uuid.UUID(plain["id"])) == []

    from models.lifecycle import Fence, LostJob, claim
    from worker import db_sink

    # A worker's findings, written under the attempt it claimed, are staged like the API's transitions.
    running = client.post("/jobs", json={**small_spec(), "webhook": {"url": "https://hooks.example.com/plateau"}})
    job_id = uuid.UUID(running.json()["id"])
    with session_scope() as s:
        taken = claim(s, job_id, worker_host="w:1", lease_seconds=60, max_attempts=3)
    fence = Fence(job_id, taken.job.attempts, "w:1")
    db_sink.DbSink(fence).event("finding", "val_loss plateaued", {"rule": "plateau"})
    db_sink.DbSink(fence).event("lr_reduced", "learning rate 1e-3 → 1e-4")  # not a webhook event
    assert [r.event for r in rows_of(job_id)] == ["queued", "running", "finding"]
    assert rows_of(job_id)[-1].body["data"] == {"reason": "val_loss plateaued", "finding": {"rule": "plateau"}}
    # The cancelled job's stale attempt stages nothing.
    with pytest.raises(LostJob):
        db_sink.DbSink(Fence(uuid.UUID(job["id"]), 1, "w:1")).event("finding", "late", {"rule": "plateau"})
    assert [r.event for r in rows_of(uuid.UUID(job["id"]))] == ["queued", "cancelled"]


def test_the_outbox_is_counted_in_metrics(client):
    """Operators see what waits and what was given up on: `plateau_webhook_deliveries{state}`."""

    def count(state: str) -> float:
        lines = client.get("/metrics").text.splitlines()
        return float(
            next(
                line.split()[-1] for line in lines if line.startswith(f'plateau_webhook_deliveries{{state="{state}"}}')
            )
        )

    before = count("pending")
    submit("https://hooks.example.com/plateau")
    assert count("pending") == before + 1 and count("dead") >= 0


def test_data_json_cannot_hold_is_stored_as_sent_not_a_failed_transition():
    job_id = submit("https://hooks.example.com/plateau")
    odd = {"parent": uuid.uuid4(), "when": datetime(2026, 1, 2, tzinfo=timezone.utc)}
    with session_scope() as s:
        outbox.stage(s, s.get(Job, job_id), "finding", status="queued", data=odd)
        s.commit()
    row = rows_of(job_id)[-1]
    assert row.body["data"] == {"parent": str(odd["parent"]), "when": "2026-01-02 00:00:00+00:00"}
