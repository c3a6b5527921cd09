"""GET /jobs/{id}/events: Server-Sent Events from a real API process, progress simulated in the database."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import select

from api.events.service import Cursor, fetch
from client.sdk import PlateauClient, PlateauError, parse_sse
from models.db import session_scope
from models.lifecycle import record_event, upsert_epoch
from models.tables import Job, utcnow
from tests.procs import start_api
from tests.specs import small_spec

PREFIX = "events-test"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    proc, url = start_api({}, tmp_path_factory.mktemp("events-api") / "api.log")
    yield url
    proc.stop()
    with session_scope() as s:  # leave no active jobs behind for the per-tenant limit
        s.execute(
            update(Job)
            .where(Job.name.like(f"{PREFIX}%"), Job.status.in_(["queued", "running"]))
            .values(status="cancelled")
        )
        s.commit()


@pytest.fixture(scope="module")
def sdk(api):
    with PlateauClient(api, timeout=10) as c:
        yield c


def new_job(sdk: PlateauClient) -> str:
    return str(sdk.submit(small_spec(name=f"{PREFIX}-{uuid.uuid4().hex[:6]}")).id)


def epoch_row(n: int) -> dict:
    return {
        "epoch": n,
        "loss": 1.0 / n,
        "accuracy": 0.5,
        "val_loss": 1.1 / n,
        "val_accuracy": 0.4,
        "learning_rate": 1e-3,
    }


def add_epoch(job_id: str, n: int) -> None:
    with session_scope() as s:
        upsert_epoch(s, uuid.UUID(job_id), epoch_row(n))


def add_event(job_id: str, kind: str, reason: str) -> None:
    with session_scope() as s:
        record_event(s, uuid.UUID(job_id), kind, reason=reason)
        s.commit()


def set_status(job_id: str, status: str, reason: str | None = None) -> None:
    jid = uuid.UUID(job_id)
    with session_scope() as s:
        previous = s.exec(select(Job.status).where(Job.id == jid)).one()
        values = {"status": status}
        if status in ("succeeded", "failed", "cancelled"):
            values["finished_at"] = utcnow()
        s.execute(update(Job).where(Job.id == jid).values(**values))
        record_event(s, jid, "state", from_status=previous, to_status=status, reason=reason)
        s.commit()


def cursor(event_id: str) -> tuple[int, int]:
    c = Cursor.parse(event_id)
    return c.event, c.epoch


def test_stream_sends_events_and_epochs_in_order_with_resumable_ids(sdk):
    jid = new_job(sdk)
    set_status(jid, "running", "started")
    add_epoch(jid, 1)
    add_event(jid, "lr_reduced", "ReduceLROnPlateau: 1e-3 → 1e-4")
    add_epoch(jid, 2)
    add_event(jid, "finding", "overfitting suspected")
    set_status(jid, "succeeded", "all epochs done")

    events = list(sdk.events(jid, poll=0.1))
    kinds = [e.event for e in events]
    assert kinds[0] == "state" and events[0].data["to_status"] == "queued"
    mine = [k for k in kinds if k not in ("enqueued", "enqueue_failed")]
    assert mine == ["state", "state", "epoch", "lr_reduced", "epoch", "finding", "state", "end"]
    assert [e.data["epoch"] for e in events if e.event == "epoch"] == [1, 2]
    assert events[-1].data == {"status": "succeeded"}
    last_state = [e for e in events if e.event == "state"][-1]
    assert last_state.data["from_status"] == "running" and last_state.data["reason"] == "all epochs done"

    ids = [cursor(e.id) for e in events[:-1]]
    assert all(a < b for a, b in zip(ids, ids[1:])), ids  # every item moves the cursor forward
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(ids, ids[1:]))  # both parts only grow
    assert ids[-1][1] == 2 and events[-1].id == events[-2].id
    epoch2 = next(e for e in events if e.event == "epoch" and e.data["epoch"] == 2)
    assert epoch2.data["val_loss"] == pytest.approx(0.55) and "recorded_at" in epoch2.data


def test_resume_with_last_event_id_skips_what_was_sent(sdk, api):
    jid = new_job(sdk)
    set_status(jid, "running", "started")
    add_epoch(jid, 1)

    seen = []
    for event in sdk.events(jid, poll=0.1):  # the job is running: leave the stream after epoch 1
        seen.append(event)
        if event.event == "epoch":
            break
    resume_from = seen[-1].id

    add_event(jid, "lr_reduced", "lr 1e-4")
    add_epoch(jid, 2)
    set_status(jid, "failed", "out of memory")

    rest = list(sdk.events(jid, last_event_id=resume_from, poll=0.1))
    assert [e.event for e in rest] == ["lr_reduced", "epoch", "state", "end"]
    assert rest[1].data["epoch"] == 2 and rest[-1].data == {"status": "failed"}
    assert not {e.id for e in seen} & {e.id for e in rest[:-1]}

    # The same through the raw header, and the ?after= query parameter browsers without headers can use.
    raw = httpx.get(
        f"{api}/jobs/{jid}/events", headers={"Last-Event-ID": resume_from}, params={"poll": 0.1}, timeout=10
    )
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    assert [e.event for e in parse_sse(raw.text.splitlines())] == ["lr_reduced", "epoch", "state", "end"]
    assert f"id: {rest[0].id}" in raw.text and "event: epoch" in raw.text
    after = httpx.get(f"{api}/jobs/{jid}/events", params={"after": rest[1].id, "poll": 0.1}, timeout=10)
    assert [e.event for e in parse_sse(after.text.splitlines())] == ["state", "end"]

    # Resuming from the end id: nothing is repeated, only the end marker.
    assert [e.event for e in sdk.events(jid, last_event_id=rest[-1].id)] == ["end"]


@pytest.mark.timeout(60)
def test_live_stream_follows_progress_and_ends_after_terminal(sdk):
    jid = new_job(sdk)

    def train():
        time.sleep(0.4)
        set_status(jid, "running", "started")
        for n in (1, 2, 3):
            time.sleep(0.3)
            add_epoch(jid, n)
        time.sleep(0.3)
        set_status(jid, "succeeded", "done")

    worker = threading.Thread(target=train)
    worker.start()
    started = time.monotonic()
    try:
        events = list(sdk.events(jid, poll=0.1))
    finally:
        worker.join()
    assert time.monotonic() - started < 20
    assert [e.data["epoch"] for e in events if e.event == "epoch"] == [1, 2, 3]
    states = [e.data["to_status"] for e in events if e.event == "state"]
    assert states == ["queued", "running", "succeeded"]
    assert events[-1].event == "end" and events[-1].data == {"status": "succeeded"}


def test_terminal_job_stream_ends_at_once(sdk):
    jid = new_job(sdk)
    sdk.cancel(jid)
    started = time.monotonic()
    events = list(sdk.events(jid))
    assert time.monotonic() - started < 5
    assert events[-1].data == {"status": "cancelled"}
    assert [e.data["to_status"] for e in events if e.event == "state"] == ["queued", "cancelled"]


def test_unknown_job_is_404_and_bad_id_is_422(sdk, api):
    with pytest.raises(PlateauError) as exc:
        list(sdk.events(str(uuid.uuid4())))
    assert exc.value.status_code == 404
    jid = new_job(sdk)
    r = httpx.get(f"{api}/jobs/{jid}/events", headers={"Last-Event-ID": "e12"}, timeout=10)
    assert r.status_code == 422 and "last-event-id" in r.text
    r = httpx.get(f"{api}/jobs/{jid}/events", params={"after": "99999999999-0"}, timeout=10)
    assert r.status_code == 422  # beyond the 32-bit ids, refused up front instead of failing mid-stream


def test_batches_stay_in_order_when_more_rows_wait_than_one_batch_holds(sdk):
    jid = new_job(sdk)
    set_status(jid, "running", "started")
    for n in range(1, 6):
        add_epoch(jid, n)
        add_event(jid, "finding", f"after epoch {n}")
    set_status(jid, "succeeded", "done")

    items, at = [], Cursor()
    for _ in range(50):
        batch = fetch(uuid.UUID(jid), at, limit=2)
        items.extend(batch.items)
        if batch.items:
            at = batch.items[-1].cursor
        if batch.finished:
            break
    whole = fetch(uuid.UUID(jid), Cursor(), limit=500)
    assert whole.finished
    assert [(i.event, i.data) for i in items] == [(i.event, i.data) for i in whole.items]
    assert [i.event for i in items].count("epoch") == 5


def test_parse_sse_follows_the_event_stream_format():
    lines = [
        ": ping",
        "id: 1-0",
        "event: state",
        'data: {"a":',
        "data: 1}",
        "",
        "data: plain",
        "",
        "retry: 10",
        "event: empty",
        "",
    ]
    events = list(parse_sse(lines))
    assert events[0].event == "state" and events[0].data == {"a": 1} and events[0].id == "1-0"
    assert events[1].event == "message" and events[1].data == "plain" and events[1].id == "1-0"
    assert len(events) == 2


def test_events_follow_tenant_scoping(client):
    """With API keys on, another tenant's job is 404 and a call without a key 401, like every job route."""
    from api.auth import create_key
    from models.settings import Settings, get_settings

    settings = Settings(auth_enabled=True)
    client.app.dependency_overrides[get_settings] = lambda: settings
    try:
        with session_scope() as s:
            mine = {"Authorization": f"Bearer {create_key(session=s, tenant=f'{PREFIX}-a-{uuid.uuid4().hex[:6]}')}"}
            theirs = {"Authorization": f"Bearer {create_key(session=s, tenant=f'{PREFIX}-b-{uuid.uuid4().hex[:6]}')}"}
        jid = client.post("/jobs", json=small_spec(name=f"{PREFIX}-scoped"), headers=mine).json()["id"]
        assert client.post(f"/jobs/{jid}/cancel", headers=mine).status_code == 202
        assert client.get(f"/jobs/{jid}/events").status_code == 401
        assert client.get(f"/jobs/{jid}/events", headers=theirs).status_code == 404
        r = client.get(f"/jobs/{jid}/events", headers=mine)
        assert r.status_code == 200
        assert [e.event for e in parse_sse(r.text.splitlines())][-1] == "end"
    finally:
        client.app.dependency_overrides.clear()
