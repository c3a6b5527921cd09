"""The HTTP contract against real PostgreSQL and Redis (no worker consumes this process's queue)."""

from __future__ import annotations

import uuid

import redis

from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.settings import Settings, get_settings
from tests.specs import small_spec


def submit(client, spec=None, **headers):
    r = client.post("/jobs", json=spec or small_spec(), headers=headers)
    assert r.status_code in (200, 202), r.text
    return r


def test_submit_returns_202_queued_with_location(client):
    r = submit(client)
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued" and job["attempts"] == 0
    assert r.headers["location"].endswith(f"/jobs/{job['id']}")
    assert job["links"]["metrics"].endswith(f"/jobs/{job['id']}/metrics")
    detail = client.get(f"/jobs/{job['id']}").json()
    assert [e["kind"] for e in detail["events"]][:2] == ["state", "enqueued"]
    assert detail["spec"]["optimizer"]["name"] == "adam"  # defaults are filled in and stored


def test_submit_puts_the_job_on_the_broker(client):
    queue = get_settings().queue
    before = redis.Redis.from_url(get_settings().broker_url).llen(queue)
    submit(client)
    assert redis.Redis.from_url(get_settings().broker_url).llen(queue) == before + 1


def test_idempotency_key_returns_the_same_job(client):
    key = f"k-{uuid.uuid4()}"
    first = submit(client, **{"Idempotency-Key": key})
    again = submit(client, **{"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    r = client.post("/jobs", json=small_spec(epochs=4), headers={"Idempotency-Key": key})
    assert r.status_code == 409 and "Idempotency-Key" in r.json()["detail"]


def test_unknown_job_is_404(client):
    missing = uuid.uuid4()
    for path in (f"/jobs/{missing}", f"/jobs/{missing}/metrics"):
        assert client.get(path).status_code == 404
    assert client.post(f"/jobs/{missing}/cancel").status_code == 404
    assert client.get("/jobs/not-a-uuid").status_code == 422


def test_cancel_queued_then_409(client):
    job = submit(client).json()
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]


def test_list_is_newest_first_with_cursor(client):
    ids = [submit(client, small_spec(name=f"page-{i}")).json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        page = client.get("/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in ids] == list(reversed(ids))
    queued = client.get("/jobs", params={"status": "queued", "limit": 1000}).json()["items"]
    assert queued and all(j["status"] == "queued" for j in queued)
    assert client.get("/jobs", params={"status": "bogus"}).status_code == 422
    assert client.get("/jobs", params={"limit": 5000}).status_code == 422
    assert client.get("/jobs", params={"cursor": "garbage"}).status_code == 422


def test_metrics_cursor_returns_only_new_epochs(client):
    job = submit(client).json()
    jid = uuid.UUID(job["id"])
    with session_scope() as s:
        for epoch in (1, 2, 3):
            upsert_epoch(s, jid, {"epoch": epoch, "loss": 1.0 / epoch, "learning_rate": 1e-3})
        upsert_epoch(s, jid, {"epoch": 2, "loss": 0.4, "learning_rate": 1e-3})  # a re-run epoch replaces its row
    page = client.get(f"/jobs/{jid}/metrics").json()
    assert [r["epoch"] for r in page["items"]] == [1, 2, 3]
    assert page["items"][1]["loss"] == 0.4
    page = client.get(f"/jobs/{jid}/metrics", params={"after_epoch": 1, "limit": 1}).json()
    assert [r["epoch"] for r in page["items"]] == [2] and page["next_after_epoch"] == 2
    page = client.get(f"/jobs/{jid}/metrics", params={"after_epoch": 3}).json()
    assert page["items"] == [] and page["next_after_epoch"] == 3
    assert client.get(f"/jobs/{jid}/metrics", params={"limit": 0}).status_code == 422


def test_livez_and_readyz(client):
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_503_names_the_broker_when_redis_is_unreachable(client):
    broken = Settings(broker_url="redis://127.0.0.1:1/0")
    client.app.dependency_overrides[get_settings] = lambda: broken
    try:
        r = client.get("/readyz")
    finally:
        client.app.dependency_overrides.clear()
    assert r.status_code == 503
    assert list(r.json()["failing"]) == ["broker"]
