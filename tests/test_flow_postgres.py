"""End to end on PostgreSQL + Redis: a real API process and real Celery workers that really train."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from samples.shapes import generate
from tests.conftest import new_database_url
from tests.flows import TERMINAL, assert_epoch_rows, run_small_job_to_success, wait_epochs, wait_status
from tests.procs import start_api, start_worker, wait_for
from tests.specs import running_spec, small_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    logs = tmp_path_factory.mktemp("logs")
    return {
        "PLATEAU_QUEUE": os.environ["PLATEAU_TEST_WORKER_QUEUE"],
        "PLATEAU_DATABASE_URL": new_database_url(),
        "PLATEAU_LEASE_SECONDS": "6",
        "PLATEAU_RECONCILE_INTERVAL": "2",
        "PLATEAU_CANCEL_POLL_SECONDS": "0.5",
        "PLATEAU_REQUEUE_AFTER": "30",
        "LOGS": str(logs),
    }


@pytest.fixture(scope="module")
def api(env):
    proc, url = start_api(env, Path(env["LOGS"]) / "api.log")
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    proc.stop()


@pytest.fixture(scope="module")
def worker(env):
    holder = {"proc": start_worker(env, Path(env["LOGS"]) / "worker-1.log")}
    yield holder
    holder["proc"].stop()


def test_job_succeeds_and_a_cancelled_queued_job_is_skipped(api, worker, data_root):
    logs = lambda: worker["proc"].tail()  # noqa: E731
    # a job on a corrupt data set fails with a reason, and the worker goes on to the next job
    generate(data_root / "corrupt", classes=2, train=2, val=1, size=80)
    (data_root / "corrupt" / "train" / "circle" / "broken.png").write_bytes(b"\x89PNG not an image")
    broken = api.post(
        "/jobs", json=small_spec(dataset={"train_dir": "corrupt/train", "val_dir": "corrupt/val", "image_size": 75})
    ).json()
    spec = small_spec(epochs=3)
    first = api.post("/jobs", json=spec).json()
    follower = api.post("/jobs", json=small_spec(epochs=3, name="waits-behind")).json()
    # the solo worker takes one job at a time, so the second waits on the broker; cancel it there
    assert api.post(f"/jobs/{follower['id']}/cancel").json()["status"] == "cancelled"
    done = run_small_job_to_success(api, spec, logs, job=first)
    failed = api.get(f"/jobs/{broken['id']}").json()
    assert failed["status"] == "failed" and "file circle/broken.png is not an image" in failed["error"], failed
    assert done["class_counts"] == {
        "train": {"circle": 8, "square": 8, "triangle": 8},
        "val": {"circle": 4, "square": 4, "triangle": 4},
    }
    assert done["worker_host"]

    def skipped():
        events = api.get(f"/jobs/{follower['id']}").json()["events"]
        return any(e["kind"] == "delivery_skipped" for e in events)

    wait_for(skipped, 60, logs)
    after = api.get(f"/jobs/{follower['id']}").json()
    assert after["status"] == "cancelled" and after["attempts"] == 0
    assert api.get(f"/jobs/{follower['id']}/metrics").json()["items"] == []


def test_cancel_running_job_stops_at_a_batch_boundary(api, worker):
    logs = lambda: worker["proc"].tail()  # noqa: E731
    job = api.post("/jobs", json=running_spec(epochs=200)).json()
    wait_epochs(api, job["id"], 1, 300, logs)
    r = api.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    done = wait_status(api, job["id"], TERMINAL, 120, logs)
    assert done["status"] == "cancelled" and done["stop_reason"] == "cancelled by request"
    n = len(api.get(f"/jobs/{job['id']}/metrics").json()["items"])
    assert 1 <= n < 200
    assert api.post(f"/jobs/{job['id']}/cancel").status_code == 409


def test_forked_job_runs_and_on_stagnation_stops_it(api, worker):
    logs = lambda: worker["proc"].tail()  # noqa: E731
    parent = api.post("/jobs", json=small_spec(epochs=1, name="parent")).json()
    api.post(f"/jobs/{parent['id']}/cancel")
    patch = {"epochs": 12, "on_stagnation": {"action": "stop", "after_epochs": 3}}
    r = api.post(f"/jobs/{parent['id']}/fork", json={"patch": patch})
    assert r.status_code == 202, r.text
    child = r.json()
    assert child["parent_id"] == parent["id"]
    # a frozen random-init base leaves validation at chance: the analysis stops the job once it can tell
    done = wait_status(api, child["id"], TERMINAL, 400, logs)
    assert done["status"] == "succeeded", done
    assert done["stop_reason"] and done["stop_reason"].startswith("on_stagnation:"), done["stop_reason"]
    findings = [e for e in done["events"] if e["kind"] == "finding"]
    assert findings and findings[-1]["data"]["rule"] in done["stop_reason"]
    n = len(api.get(f"/jobs/{child['id']}/metrics").json()["items"])
    assert 3 <= n < 12
    body = api.get(f"/jobs/{child['id']}/analysis").json()
    assert body["verdict"] in ("stagnating", "insufficient_data") and body["findings"]
    assert api.get(f"/jobs/{parent['id']}").json()["children"] == [child["id"]]


def test_sigkilled_worker_job_resumes_from_checkpoint(api, worker, env):
    logs = lambda: worker["proc"].tail()  # noqa: E731
    epochs = 5
    job = api.post("/jobs", json=running_spec(epochs=epochs)).json()
    wait_epochs(api, job["id"], 2, 300, logs)
    worker["proc"].kill(signal.SIGKILL)
    worker["proc"].p.wait(10)
    killed_at = len(api.get(f"/jobs/{job['id']}/metrics").json()["items"])
    assert api.get(f"/jobs/{job['id']}").json()["status"] == "running"

    worker["proc"] = start_worker(env, Path(env["LOGS"]) / "worker-2.log", name="w2")
    done = wait_status(api, job["id"], TERMINAL, 400, lambda: worker["proc"].tail())
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    rows = api.get(f"/jobs/{job['id']}/metrics").json()["items"]
    assert_epoch_rows(rows, epochs)  # every epoch exactly once
    # the lost attempt was requeued and the second claim recorded itself as a resume, in that order
    states = [
        (e["to_status"], e["reason"] or "", (e["data"] or {}).get("attempt"))
        for e in done["events"]
        if e["kind"] == "state"
    ]
    runs = [s for s in states if s[0] == "running"]
    assert [(r, a) for _, r, a in runs] == [("started", 1), ("resumed from the last checkpoint (attempt 2)", 2)], states
    requeued = next(i for i, s in enumerate(states) if s[0] == "queued" and "lease expired" in s[1])
    assert states.index(runs[0]) < requeued < states.index(runs[1]), states
    # resumed, not restarted: the second worker trained only the epochs after the last checkpoint
    second = worker["proc"].tail(1_000_000).count("epoch recorded")
    assert epochs - killed_at <= second <= epochs - killed_at + 1, (killed_at, second)
