"""Probes and label issues over HTTP against real PostgreSQL and Redis (no worker consumes this process's queue),
the dataset exclusion list, and the probe rows' own life (claim, lease, recovery)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from models import probes
from models.db import session_scope
from models.settings import get_settings
from models.tables import Job, Probe, utcnow
from tests.specs import small_spec
from worker.training.errors import DataError
from worker.training.scan import scan

SUBMITTED: list[uuid.UUID] = []


@pytest.fixture(scope="module", autouse=True)
def _leave_no_active_jobs():
    """Jobs here stay queued (no worker): end them, as they count against the tenant's active-job limit."""
    yield
    with session_scope() as s:
        s.execute(
            update(Job).where(Job.id.in_(SUBMITTED), Job.status.in_(["queued", "running"])).values(status="cancelled")
        )
        s.commit()


def submit(client, spec=None) -> dict:
    r = client.post("/jobs", json=spec or small_spec())
    assert r.status_code == 202, r.text
    SUBMITTED.append(uuid.UUID(r.json()["id"]))
    return r.json()


def locs(response) -> list[tuple]:
    assert response.status_code == 422, response.text
    return [tuple(e["loc"]) for e in response.json()["detail"]]


# --- the spec ---------------------------------------------------------------------------------------------------


def test_diagnosis_spec_is_strict_and_names_the_field(client):
    r = client.post("/jobs", json=small_spec(diagnosis={"probes": ["lr_range", "crystal_ball"]}))
    assert any(loc[:3] == ("body", "diagnosis", "probes") for loc in locs(r)), r.text
    r = client.post("/jobs", json=small_spec(diagnosis={"probes": "sometimes"}))
    assert any(loc[:3] == ("body", "diagnosis", "probes") for loc in locs(r))
    r = client.post("/jobs", json=small_spec(diagnosis={"budget_seconds": 0}))
    assert ("body", "diagnosis", "budget_seconds") in locs(r)
    r = client.post("/jobs", json=small_spec(diagnosis={"probes": "auto", "extra": 1}))
    assert ("body", "diagnosis", "extra") in locs(r)
    job = submit(client, small_spec(diagnosis={"probes": ["label_check"], "budget_seconds": 30}))
    assert job["spec"]["diagnosis"] == {"probes": ["label_check"], "budget_seconds": 30}


@pytest.mark.parametrize(
    ("exclude", "why"),
    [
        (["../val/circle/circle_0000.png"], "'..'"),
        (["/etc/passwd"], "absolute"),
        (["circle/no_such_file.png"], "not a file"),
        (["circle"], "CLASS/FILE"),
        ([""], "at least 1 character"),
    ],
)
def test_dataset_exclude_is_validated(client, exclude, why):
    spec = small_spec()
    spec["dataset"] = {**spec["dataset"], "exclude": exclude}
    r = client.post("/jobs", json=spec)
    assert r.status_code == 422, r.text
    errors = [e for e in r.json()["detail"] if tuple(e["loc"][:3]) == ("body", "dataset", "exclude")]
    assert errors and why in errors[0]["msg"], r.text


def test_dataset_exclude_has_a_maximum_length(client):
    spec = small_spec()
    spec["dataset"] = {**spec["dataset"], "exclude": ["circle/circle_0000.png"] * 10_001}
    assert ("body", "dataset", "exclude") in locs(client.post("/jobs", json=spec))


def test_scan_leaves_out_excluded_files(data_root):
    train = data_root / "shapes" / "train"
    everything = scan(train, field_name="train_dir")
    left = scan(train, field_name="train_dir", exclude=["circle/circle_0000.png", "square/square_0003.png"])
    assert len(left) == len(everything) - 2
    assert not any(p.endswith(("circle/circle_0000.png", "square/square_0003.png")) for p in left.paths)
    whole_class = [f"circle/circle_{i:04d}.png" for i in range(8)]
    with pytest.raises(DataError, match="circle.*no images left after dataset.exclude"):
        scan(train, field_name="train_dir", exclude=whole_class)


# --- requesting, listing, cancelling -------------------------------------------------------------------------


def test_request_list_and_cancel_probes(client):
    job = submit(client)
    queue = get_settings().queue
    broker = redis.Redis.from_url(get_settings().broker_url)
    before = broker.llen(queue)
    r = client.post(f"/jobs/{job['id']}/probes", json={"probes": ["lr_range", "label_check"], "budget_seconds": 30})
    assert r.status_code == 202, r.text
    items = r.json()["items"]
    assert [p["name"] for p in items] == ["lr_range", "label_check"]
    assert all(p["status"] == "queued" and p["trigger"] == "request" for p in items)
    assert all(p["inputs"] == {"budget_seconds": 30} for p in items)
    assert broker.llen(queue) == before + 2  # each probe is its own task on the worker queue
    # the same probe while one is under way: refused
    again = client.post(f"/jobs/{job['id']}/probes", json={"probes": ["label_check"]})
    assert again.status_code == 409 and "label_check" in again.json()["detail"]
    listed = client.get(f"/jobs/{job['id']}/probes").json()["items"]
    assert {p["id"] for p in listed} == {p["id"] for p in items}
    one = client.get(f"/jobs/{job['id']}/probes/{items[0]['id']}").json()
    assert one["name"] == "lr_range"
    cancelled = client.post(f"/jobs/{job['id']}/probes/{items[0]['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/jobs/{job['id']}/probes/{items[0]['id']}/cancel").status_code == 409
    # omitted names: every probe not already under way; the job's own budget (the default) when none is given
    rest = client.post(f"/jobs/{job['id']}/probes", json={"probes": ["memorization", "linear_probe"]})
    assert rest.status_code == 202 and all(p["inputs"]["budget_seconds"] == 120 for p in rest.json()["items"])


def test_probe_requests_name_bad_fields_and_unknown_jobs(client):
    job = submit(client)
    r = client.post(f"/jobs/{job['id']}/probes", json={"probes": ["crystal_ball"]})
    assert any(loc[:3] == ("body", "probes", 0) for loc in locs(r))
    assert ("body", "budget_seconds") in locs(client.post(f"/jobs/{job['id']}/probes", json={"budget_seconds": 10**6}))
    assert ("body", "probes") in locs(client.post(f"/jobs/{job['id']}/probes", json={"probes": []}))
    missing = uuid.uuid4()
    assert client.post(f"/jobs/{missing}/probes", json={}).status_code == 404
    assert client.get(f"/jobs/{missing}/probes").status_code == 404
    assert client.get(f"/jobs/{missing}/label-issues").status_code == 404
    assert client.get(f"/jobs/{job['id']}/probes/{uuid.uuid4()}").status_code == 404
    assert client.post(f"/jobs/{job['id']}/probes/{uuid.uuid4()}/cancel").status_code == 404


def test_an_empty_body_asks_for_every_probe(client):
    job = submit(client)
    r = client.post(f"/jobs/{job['id']}/probes")
    assert r.status_code == 202, r.text
    assert sorted(p["name"] for p in r.json()["items"]) == sorted(
        ["lr_range", "memorization", "linear_probe", "label_check"]
    )


def test_cancelling_the_job_cancels_its_probes(client):
    job = submit(client)
    items = client.post(f"/jobs/{job['id']}/probes", json={"probes": ["linear_probe"]}).json()["items"]
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 202
    after = client.get(f"/jobs/{job['id']}/probes/{items[0]['id']}").json()
    assert after["status"] == "cancelled" and after["cancel_requested"]


# --- a probe row's life: claim, lease, recovery ------------------------------------------------------------


def test_a_probe_is_claimed_once_and_a_lost_workers_probe_is_requeued(client):
    job = submit(client)
    probe_id = client.post(f"/jobs/{job['id']}/probes", json={"probes": ["memorization"]}).json()["items"][0]["id"]
    pid = uuid.UUID(probe_id)
    with session_scope() as s:
        first, _ = probes.claim(s, pid, worker_host="w1", lease_seconds=60, max_attempts=3)
        second, why = probes.claim(s, pid, worker_host="w2", lease_seconds=60, max_attempts=3)
        assert first is not None and first.status == "running" and second is None and "running" in why
        # w1 dies: its lease lapses and the reconciler's step puts the probe back on the queue
        s.get(Probe, pid).lease_until = utcnow() - timedelta(seconds=1)
        s.commit()
        expired = [p for p in probes.expired_running(s) if p.id == pid]
        assert expired and probes.recover_expired(s, expired[0]) == "requeued"
        assert probes.renew(s, pid, worker_host="w1", lease_seconds=60) is None  # no longer w1's
        again, _ = probes.claim(s, pid, worker_host="w2", lease_seconds=60, max_attempts=3)
        assert again is not None and again.attempts == 2
        assert probes.renew(s, pid, worker_host="w2", lease_seconds=60) is False  # carry on
        flagged = probes.request_cancel(s, s.get(Probe, pid))
        assert flagged.status == "running" and flagged.cancel_requested  # a running probe stops at its next step
        assert probes.renew(s, pid, worker_host="w2", lease_seconds=60) is True  # which its worker learns here
        assert not probes.finish(s, pid, probes.JobStatus.succeeded, worker_host="w1", result={})
        assert probes.finish(s, pid, probes.JobStatus.succeeded, worker_host="w2", result={"x": 1}, duration_seconds=2)
    done = client.get(f"/jobs/{job['id']}/probes/{probe_id}").json()
    assert done["status"] == "succeeded" and done["duration_seconds"] == 2 and done["result"] == {"x": 1}


def test_a_stall_queues_the_probes_once(client):
    job = submit(client, small_spec(diagnosis={"probes": "auto", "budget_seconds": 20}))
    with session_scope() as s:
        row = s.get(Job, uuid.UUID(job["id"]))
        first = probes.request(s, job=row, names=["lr_range", "label_check"], budget_seconds=20, trigger="stall")
        again = probes.request(s, job=row, names=["lr_range", "label_check"], budget_seconds=20, trigger="stall")
    assert len(first) == 2 and again == []  # a resumed attempt detecting the same stall adds nothing
    items = client.get(f"/jobs/{job['id']}/probes").json()["items"]
    assert {p["trigger"] for p in items} == {"stall"}


# --- label issues -------------------------------------------------------------------------------------------


def finished_label_check(job_id: str, issues: list[dict]) -> uuid.UUID:
    """A label check as a worker records it."""
    with session_scope() as s:
        row = Probe(
            job_id=uuid.UUID(job_id),
            name="label_check",
            status="succeeded",
            inputs={"budget_seconds": 60},
            result={
                "method": "plateau",
                "images": 24,
                "classes": ["circle", "square", "triangle"],
                "noise_rate": 0.125,
                "pair_noise": [],
                "issues": issues,
                "truncated": False,
                "statement": "…",
            },
            started_at=utcnow(),
            finished_at=utcnow(),
            duration_seconds=1.0,
        )
        s.add(row)
        s.commit()
        return row.id


SUSPECTS = [
    {"file": f"circle/circle_{i:04d}.png", "given": "circle", "suspected": "square", "score": 0.9 - i / 10}
    for i in range(5)
]


def test_label_issues_page_with_a_cursor_and_serve_only_dataset_images(client, data_root):
    job = submit(client)
    empty = client.get(f"/jobs/{job['id']}/label-issues").json()
    assert empty == {"probe_id": None, "noise_rate": None, "total": 0, "items": [], "next_cursor": None}
    probe_id = finished_label_check(job["id"], [*SUSPECTS, {**SUSPECTS[0], "file": "../../val/circle/circle_0000.png"}])
    seen, cursor = [], None
    while True:
        page = client.get(f"/jobs/{job['id']}/label-issues", params={"limit": 2, "cursor": cursor}).json()
        assert page["probe_id"] == str(probe_id) and page["total"] == 6 and len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i["n"] for i in seen] == list(range(6))
    assert [i["file"] for i in seen[:5]] == [s["file"] for s in SUSPECTS]
    r = client.get(f"/jobs/{job['id']}/label-issues", params={"cursor": "garbage"})
    assert ("query", "cursor") in locs(r)
    image = client.get(f"/jobs/{job['id']}/label-issues/0/image")
    assert (
        image.status_code == 200 and image.content == (data_root / "shapes/train/circle/circle_0000.png").read_bytes()
    )
    assert client.get(f"/jobs/{job['id']}/label-issues/5/image").status_code == 404  # outside train_dir: never served
    assert client.get(f"/jobs/{job['id']}/label-issues/6/image").status_code == 404
    assert client.get(f"/jobs/{job['id']}/label-issues/-1/image").status_code == 422


def test_fork_excluding_label_issues_reads_the_latest_label_check(client):
    job = submit(client)
    r = client.post(f"/jobs/{job['id']}/fork", json={"apply": ["exclude_label_issues"]})
    assert ("body", "apply", 0) in locs(r) and "label check" in r.text
    finished_label_check(job["id"], SUSPECTS[:3])
    r = client.post(f"/jobs/{job['id']}/fork", json={"apply": ["exclude_label_issues"]})
    assert r.status_code == 202, r.text
    child = r.json()
    assert child["spec"]["dataset"]["exclude"] == sorted(s["file"] for s in SUSPECTS[:3])
    forked = [e for e in client.get(f"/jobs/{job['id']}").json()["events"] if e["kind"] == "forked"]
    assert forked[-1]["data"]["applied"] == ["exclude_label_issues"]


def test_the_workers_sink_queues_stall_probes_once_and_never_raises(client):
    from models.lifecycle import Fence
    from tests.test_autopilot_logic import fenced_sink
    from worker.db_sink import DbSink

    job = submit(client, small_spec(diagnosis={"probes": ["label_check"], "budget_seconds": 30}))
    sink = fenced_sink(uuid.UUID(job["id"]))
    sink.stalled(3, ["label_check"], 30)
    sink.stalled(4, ["label_check"], 30)  # a resumed attempt detecting the stall again
    items = client.get(f"/jobs/{job['id']}/probes").json()["items"]
    assert [(p["name"], p["trigger"], p["inputs"]) for p in items] == [("label_check", "stall", {"budget_seconds": 30})]
    events = [e for e in client.get(f"/jobs/{job['id']}").json()["events"] if e["kind"] == "probes"]
    assert len(events) == 1 and events[0]["data"]["trigger"] == "stall"
    DbSink(Fence(uuid.uuid4(), 1, "w-sink:1")).stalled(3, ["label_check"], 30)  # a job that is gone: logged
    DbSink(Fence(uuid.UUID(job["id"]), 9, "w-sink:1")).stalled(5, ["lr_range"], 30)  # an attempt that lost it
    assert [p["name"] for p in client.get(f"/jobs/{job['id']}/probes").json()["items"]] == ["label_check"]
