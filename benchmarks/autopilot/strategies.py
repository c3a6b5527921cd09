"""The three ways of repairing a planted job, each a loop of HTTP calls against a running service.

Each returns the lineage it produced: the jobs in order and the rounds spent. The healthy goal is given to
the random baseline so it stops as soon as it reaches it (an oracle stop: generous to the baseline)."""

from __future__ import annotations

import random
import time

import httpx

from contract.status import TERMINAL_STATUSES

DONE = TERMINAL_STATUSES
# The seed recipe applied blindly: augmentation + dropout 0.5 + L2 1e-4 + ReduceLROnPlateau.
SEED_RECIPE = {
    "regularization": {
        "augmentation": {"horizontal_flip": True, "rotation_range": 15, "zoom_range": 0.1},
        "dropout": 0.5,
        "l2": 1e-4,
    },
    "callbacks": {"reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.1, "patience": 3}},
}


def wait_done(api: httpx.Client, job_id: str, poll: float = 2.0) -> dict:
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in DONE:
            return job
        time.sleep(poll)


def best(api: httpx.Client, job_id: str) -> tuple[float | None, int]:
    rows = api.get(f"/jobs/{job_id}/metrics", params={"limit": 1000}).json()["items"]
    values = [r["val_accuracy"] for r in rows if r["val_accuracy"] is not None]
    return (max(values) if values else None), len(rows)


def submit(api: httpx.Client, spec: dict, **extra) -> str:
    r = api.post("/jobs", json={**spec, **extra})
    if r.status_code != 202:
        raise SystemExit(f"submit refused ({r.status_code}): {r.text}")
    return r.json()["id"]


def fork(api: httpx.Client, job_id: str, apply: list[str], patch: dict | None = None) -> str:
    r = api.post(f"/jobs/{job_id}/fork", json={"apply": apply, "patch": patch or {}})
    if r.status_code != 202:
        raise SystemExit(f"fork refused ({r.status_code}): {r.text}")
    return r.json()["id"]


def autopilot(api: httpx.Client, spec: dict, *, rounds: int, goal: float | None = None, seed: int = 0) -> list[str]:
    config = {"max_rounds": rounds, "metric": "val_accuracy", "min_gain": 0.01, "min_confidence": 0.7}
    root = submit(api, spec, autopilot={**config, **({"target": {"val_accuracy": goal}} if goal else {})})
    while True:
        body = api.get(f"/jobs/{root}/lineage").json()
        if body["autopilot"]["state"] == "ended":
            return [s["job_id"] for s in body["steps"]]
        time.sleep(2)


def random_remedy(api: httpx.Client, spec: dict, *, rounds: int, goal: float | None, seed: int = 0) -> list[str]:
    """Each round: any remedy with a spec change from the current job's analysis, chosen at random, not yet tried."""
    rng = random.Random(seed)
    jobs = [submit(api, spec)]
    tried: set[str] = set()
    for _ in range(rounds):
        wait_done(api, jobs[-1])
        value, _ = best(api, jobs[-1])
        if goal is not None and value is not None and value >= goal:
            break
        findings = api.get(f"/jobs/{jobs[-1]}/analysis").json()["findings"]
        options = sorted({r["id"] for f in findings for r in f["remedies"] if r["patch"]} - tried)
        if not options:
            break
        choice = rng.choice(options)
        tried.add(choice)
        jobs.append(fork(api, jobs[-1], [choice]))
    wait_done(api, jobs[-1])
    return jobs


def seed_recipe(
    api: httpx.Client, spec: dict, *, rounds: int = 1, goal: float | None = None, seed: int = 0
) -> list[str]:
    jobs = [submit(api, spec)]
    wait_done(api, jobs[0])
    jobs.append(fork(api, jobs[0], [], SEED_RECIPE))
    wait_done(api, jobs[-1])
    return jobs


STRATEGIES = {"autopilot": autopilot, "random_remedy": random_remedy, "seed_recipe": seed_recipe}
