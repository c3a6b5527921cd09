"""End to end on PostgreSQL + Redis: a real API and a real Celery worker train a tiny job, then run every probe on
it through POST /jobs/{id}/probes, without touching the job's own files."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_database_url
from tests.flows import run_small_job_to_success
from tests.procs import start_api, start_worker, wait_for
from tests.specs import small_spec
from worker.probes.confident import cleanlab_available

pytestmark = pytest.mark.slow
ENDED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    env = {
        "PLATEAU_QUEUE": f"probes-{os.environ['PLATEAU_TEST_WORKER_QUEUE']}",
        "PLATEAU_DATABASE_URL": new_database_url(),
        "PLATEAU_LEASE_SECONDS": "6",
        "PLATEAU_RECONCILE_INTERVAL": "2",
        "PLATEAU_CANCEL_POLL_SECONDS": "0.5",
    }
    api_proc, url = start_api(env, logs / "api.log")
    worker = start_worker(env, logs / "worker.log")
    with httpx.Client(base_url=url, timeout=30) as api:
        yield api, worker
    worker.stop()
    api_proc.stop()


def test_every_probe_runs_on_a_trained_job_can_be_cancelled_respects_its_budget_and_leaves_the_job_alone(service):
    api, worker = service
    spec = small_spec(epochs=2, diagnosis={"probes": "off", "budget_seconds": 60})
    done = run_small_job_to_success(api, spec, worker.tail)
    model = Path(done["model_path"])
    before = (model.stat().st_mtime_ns, model.stat().st_size)
    r = api.post(f"/jobs/{done['id']}/probes", json={})
    assert r.status_code == 202, r.text

    def all_ended():
        items = api.get(f"/jobs/{done['id']}/probes").json()["items"]
        return items if all(p["status"] in ENDED for p in items) else None

    items = {p["name"]: p for p in wait_for(all_ended, 300, worker.tail, interval=1)}
    for name, probe in items.items():
        assert probe["status"] == "succeeded", (name, probe["error"], worker.tail())
        assert probe["duration_seconds"] > 0 and probe["started_at"] and probe["finished_at"]
        assert probe["result"]["statement"]
        if name != "lr_range":  # the range test sweeps from the job's initial weights
            assert probe["result"]["weights"] == "final model", probe["result"]
    assert set(items) == {"lr_range", "memorization", "linear_probe", "label_check"}
    mem = items["memorization"]["result"]
    assert mem["images"] == 24 and mem["per_class"] == 8 and isinstance(mem["fitted"], bool)
    lin = items["linear_probe"]["result"]
    assert lin["folds"] == 5 and lin["images"] == 24 and lin["chance"] == pytest.approx(1 / 3)
    assert lin["interval"][0] <= lin["accuracy"] <= lin["interval"][1]
    labels = items["label_check"]["result"]
    assert labels["method"] == ("cleanlab" if cleanlab_available() else "plateau") and labels["images"] == 24
    page = api.get(f"/jobs/{done['id']}/label-issues", params={"limit": 100}).json()
    assert page["probe_id"] == items["label_check"]["id"] and page["total"] == len(labels["issues"])
    # a head-only job on cached features: its training kept them, and its probes read them instead of the base's pass
    assert (model.parent / "train_features.npz").is_file()
    assert '"source": "stored features"' in worker.tail(1_000_000), worker.tail()
    # the job's own model was read, never written
    assert (model.stat().st_mtime_ns, model.stat().st_size) == before
    assert api.get(f"/jobs/{done['id']}").json()["status"] == "succeeded"
    # a one-second budget on another job (cancelled at once, so its probe reads its initial weights or its first
    # checkpoint): building that job's model alone takes longer, so the sweep stops early and says so
    other = api.post("/jobs", json=small_spec(epochs=50, name="cancelled-at-once")).json()
    assert api.post(f"/jobs/{other['id']}/cancel").status_code == 202
    r = api.post(f"/jobs/{other['id']}/probes", json={"probes": ["lr_range"], "budget_seconds": 1})
    probe = f"/jobs/{other['id']}/probes/{r.json()['items'][0]['id']}"
    short = wait_for(lambda: (p := api.get(probe).json())["status"] in ENDED and p, 120, worker.tail, interval=0.5)
    lr = short["result"]
    assert short["status"] == "succeeded" and lr["truncated"] is True, short
    assert lr["part"] == "head" and lr["job_rate"] == 1e-3 and len(lr["rates"]) < 100
    assert lr["start"] == "initial weights"  # the sweep starts where the job started, not from its latest weights
    assert "budget ran out" in lr["statement"]
    # cancelled while it runs: a third job kept no features, and the worker holds none of it (it holds those of the
    # job above, whose hundred head steps take a fraction of a second), so the probe builds Inception-V3 and runs
    # the base over its images first (seconds), which is when the cancel lands
    third = api.post("/jobs", json=small_spec(epochs=50, name="probe-cancelled")).json()
    assert api.post(f"/jobs/{third['id']}/cancel").status_code == 202
    r = api.post(f"/jobs/{third['id']}/probes", json={"probes": ["memorization"], "budget_seconds": 120})
    running = f"/jobs/{third['id']}/probes/{r.json()['items'][0]['id']}"
    wait_for(lambda: api.get(running).json()["status"] != "queued", 120, worker.tail, interval=0.1)
    assert api.post(f"{running}/cancel").status_code == 202
    cancelled = wait_for(lambda: (p := api.get(running).json())["status"] in ENDED and p, 60, worker.tail, interval=0.5)
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled by request", cancelled
    # what each probe cost against an epoch of the job's own training (reported in docs/probes.md)
    epochs = api.get(f"/jobs/{done['id']}/metrics").json()["items"]
    epoch_seconds = sum(e["epoch_seconds"] for e in epochs) / len(epochs)
    print(
        "probe seconds:",
        {n: round(p["duration_seconds"], 2) for n, p in items.items()},
        "epoch seconds:",
        round(epoch_seconds, 3),
    )


def test_probes_run_on_the_embedded_default(tmp_path):
    """The same path on SQLite and the filesystem broker: the launcher's worker takes the probe tasks too, and the
    label issues are served from the recorded label check."""
    from tests.deployments import Embedded

    service = Embedded(tmp_path)
    service.start()
    try:
        with service.client() as api:
            done = run_small_job_to_success(api, small_spec(epochs=1), service.logs)
            r = api.post(f"/jobs/{done['id']}/probes", json={"probes": ["linear_probe", "label_check"]})
            assert r.status_code == 202, r.text

            def all_ended():
                items = api.get(f"/jobs/{done['id']}/probes").json()["items"]
                return items if all(p["status"] in ENDED for p in items) else None

            items = {p["name"]: p for p in wait_for(all_ended, 300, service.logs, interval=1)}
            assert {n: p["status"] for n, p in items.items()} == {
                "linear_probe": "succeeded",
                "label_check": "succeeded",
            }, (items, service.logs())
            page = api.get(f"/jobs/{done['id']}/label-issues", params={"limit": 5}).json()
            assert page["probe_id"] == items["label_check"]["id"]
            assert page["total"] == len(items["label_check"]["result"]["issues"])
            assert api.get(f"/jobs/{done['id']}").json()["status"] == "succeeded"
    finally:
        service.stop()
