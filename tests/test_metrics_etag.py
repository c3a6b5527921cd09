"""Metrics pages carry an ETag: pollers revalidate for free, and a cached page never outlives a new epoch row."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlmodel import Session

from api.jobs import page_cache
from models.db import make_engine, migrate, session_scope
from models.lifecycle import upsert_epoch
from models.tables import Job
from tests.specs import small_spec


def new_job(client) -> uuid.UUID:
    r = client.post("/jobs", json=small_spec())
    assert r.status_code == 202, r.text
    return uuid.UUID(r.json()["id"])


def write(jid: uuid.UUID, epoch: int, loss: float) -> None:
    with session_scope() as s:
        upsert_epoch(s, jid, {"epoch": epoch, "loss": loss, "learning_rate": 1e-3})


def test_unchanged_page_answers_304_and_a_new_epoch_changes_the_tag(client):
    jid = new_job(client)
    write(jid, 1, 0.9)
    first = client.get(f"/jobs/{jid}/metrics")
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    tag = first.headers["etag"]
    again = client.get(f"/jobs/{jid}/metrics")
    assert again.headers["etag"] == tag and again.content == first.content

    not_modified = client.get(f"/jobs/{jid}/metrics", headers={"If-None-Match": tag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == tag

    write(jid, 2, 0.5)
    changed = client.get(f"/jobs/{jid}/metrics", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert [r["epoch"] for r in changed.json()["items"]] == [1, 2]


def test_a_rerun_epoch_replaces_the_cached_page(client):
    jid = new_job(client)
    write(jid, 1, 0.9)
    write(jid, 2, 0.8)
    before = client.get(f"/jobs/{jid}/metrics")
    assert before.json()["items"][1]["loss"] == 0.8
    write(jid, 2, 0.3)  # a resumed attempt re-runs epoch 2: same row count, new values
    after = client.get(f"/jobs/{jid}/metrics", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert [r["loss"] for r in after.json()["items"]] == [0.9, 0.3]


def test_each_page_has_its_own_tag_and_rows(client):
    jid = new_job(client)
    for epoch in (1, 2, 3):
        write(jid, epoch, 1.0 / epoch)
    pages = {
        params: client.get(f"/jobs/{jid}/metrics", params=dict(params))
        for params in ((), (("after_epoch", 1),), (("limit", 1),), (("after_epoch", 3),))
    }
    assert len({r.headers["etag"] for r in pages.values()}) == 4
    assert [r["epoch"] for r in pages[()].json()["items"]] == [1, 2, 3]
    assert [r["epoch"] for r in pages[(("after_epoch", 1),)].json()["items"]] == [2, 3]
    assert [r["epoch"] for r in pages[(("limit", 1),)].json()["items"]] == [1]
    assert pages[(("after_epoch", 3),)].json() == {"items": [], "next_after_epoch": 3}
    # another page's tag does not validate this one
    other = client.get(f"/jobs/{jid}/metrics", headers={"If-None-Match": pages[(("limit", 1),)].headers["etag"]})
    assert other.status_code == 200


def test_cache_is_not_needed_for_correct_answers(client):
    """A process without a cached copy (another API worker) renders the same bytes and tag."""
    jid = new_job(client)
    write(jid, 1, 0.7)
    cached = client.get(f"/jobs/{jid}/metrics")
    page_cache.clear()
    fresh = client.get(f"/jobs/{jid}/metrics")
    assert fresh.content == cached.content and fresh.headers["etag"] == cached.headers["etag"]


@pytest.mark.parametrize("header", ['W/"{tag}"', '"other", "{tag}"', "*"])
def test_if_none_match_forms(client, header):
    jid = new_job(client)
    write(jid, 1, 0.7)
    tag = client.get(f"/jobs/{jid}/metrics").headers["etag"].strip('"')
    r = client.get(f"/jobs/{jid}/metrics", headers={"If-None-Match": header.format(tag=tag)})
    assert r.status_code == 304


def test_unknown_job_is_404_even_when_revalidating(client):
    r = client.get(f"/jobs/{uuid.uuid4()}/metrics", headers={"If-None-Match": "*"})
    assert r.status_code == 404


def test_sqlite_migration_adds_the_version_and_epochs_bump_it(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'plateau.db'}")
    migrate(engine)
    job = Job(spec=small_spec(), spec_hash="x" * 64)
    with Session(engine, expire_on_commit=False) as s:
        s.add(job)
        s.commit()
        upsert_epoch(s, job.id, {"epoch": 1, "loss": 0.5})
        upsert_epoch(s, job.id, {"epoch": 1, "loss": 0.4})
        s.expire_all()
        assert s.get(Job, job.id).metrics_version == 2
    engine.dispose()


def test_unchanged_pages_are_served_without_reading_the_rows_again(client, monkeypatch):
    from models.jobs import service

    jid = new_job(client)
    write(jid, 1, 0.7)
    reads = []
    original = service.list_metrics
    monkeypatch.setattr(service, "list_metrics", lambda **kw: reads.append(kw["after_epoch"]) or original(**kw))
    first = client.get(f"/jobs/{jid}/metrics")
    second = client.get(f"/jobs/{jid}/metrics")
    assert second.content == first.content and reads == [None]
    write(jid, 2, 0.6)
    third = client.get(f"/jobs/{jid}/metrics")
    assert reads == [None, None] and [r["epoch"] for r in third.json()["items"]] == [1, 2]


def test_cache_turned_off_still_answers_and_revalidates(client, monkeypatch):
    from models.jobs import service
    from models.settings import Settings, get_settings

    jid = new_job(client)
    write(jid, 1, 0.7)
    reads = []
    original = service.list_metrics
    monkeypatch.setattr(service, "list_metrics", lambda **kw: reads.append(1) or original(**kw))
    client.app.dependency_overrides[get_settings] = lambda: Settings(metrics_page_cache_mb=0)
    try:
        first = client.get(f"/jobs/{jid}/metrics")
        second = client.get(f"/jobs/{jid}/metrics")
        not_modified = client.get(f"/jobs/{jid}/metrics", headers={"If-None-Match": first.headers["etag"]})
    finally:
        client.app.dependency_overrides.clear()
    assert first.content == second.content and len(reads) == 2
    assert not_modified.status_code == 304 and len(reads) == 2
