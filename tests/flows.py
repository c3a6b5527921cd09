"""Helpers for tests that drive a running service over HTTP."""

from __future__ import annotations

import math

import httpx

from tests.procs import wait_for

TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_status(api: httpx.Client, job_id: str, statuses: set[str], timeout: float, logs=lambda: "") -> dict:
    def check():
        job = api.get(f"/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_for(
        check, timeout, lambda: f"job {job_id} not in {statuses}: {api.get(f'/jobs/{job_id}').json()}\n{logs()}"
    )


def wait_epochs(api: httpx.Client, job_id: str, n: int, timeout: float, logs=lambda: "") -> list[dict]:
    def check():
        items = api.get(f"/jobs/{job_id}/metrics").json()["items"]
        return items if len(items) >= n else None

    return wait_for(check, timeout, lambda: f"job {job_id} has fewer than {n} epochs\n{logs()}")


def assert_epoch_rows(rows: list[dict], epochs: int) -> None:
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    for r in rows:
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"):
            assert r[key] is not None and math.isfinite(r[key]), (key, r)
        assert r["learning_rate"] > 0


def run_small_job_to_success(api: httpx.Client, spec: dict, logs=lambda: "", job: dict | None = None) -> dict:
    """Submit (unless given), follow the metrics with the cursor as a poller would, and check the finished job."""
    job = job or api.post("/jobs", json=spec).json()
    assert job["status"] in ("queued", "running"), job  # a fast worker may claim it before the reply is built
    jid, after, seen = job["id"], 0, []

    def poll():
        nonlocal after
        page = api.get(f"/jobs/{jid}/metrics", params={"after_epoch": after}).json()
        assert all(r["epoch"] > after for r in page["items"])
        seen.extend(page["items"])
        after = page["next_after_epoch"]
        return api.get(f"/jobs/{jid}").json()["status"] in TERMINAL

    wait_for(poll, 420, lambda: f"job did not finish: {api.get(f'/jobs/{jid}').json()}\n{logs()}", interval=1)
    poll()
    done = api.get(f"/jobs/{jid}").json()
    assert done["status"] == "succeeded", (done, logs())
    assert [r["epoch"] for r in seen] == list(range(1, spec["epochs"] + 1))  # each epoch exactly once, in order
    rows = api.get(f"/jobs/{jid}/metrics").json()["items"]
    assert_epoch_rows(rows, spec["epochs"])
    assert done["model_path"] and done["model_path"].endswith("model.keras")
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1
    assert [e["to_status"] for e in done["events"] if e["kind"] == "state"] == ["queued", "running", "succeeded"]
    return done
