"""The four ways of repairing a planted job, each a loop of HTTP calls against a running service.

Each returns the lineage it produced (`Repair`): its jobs in order, root first, and what else the strategy
measured on the way (the range test's rate and duration for "probe only"). The healthy goal is given to the
random baseline so it stops as soon as it reaches it (an oracle stop: generous to the baseline)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import httpx

from analysis.probes import suggested_rate
from contract.status import TERMINAL_STATUSES

DONE = TERMINAL_STATUSES
PROBE_ENDED = ("succeeded", "failed", "cancelled")
# The seed recipe applied blindly: augmentation + dropout 0.5 + L2 1e-4 + ReduceLROnPlateau.
SEED_RECIPE = {
    "regularization": {
        "augmentation": {"horizontal_flip": True, "rotation_range": 15, "zoom_range": 0.1},
        "dropout": 0.5,
        "l2": 1e-4,
    },
    "callbacks": {"reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.1, "patience": 3}},
}


@dataclass
class Repair:
    """A strategy's lineage: its jobs in order (root first) and what it measured besides (kept in the run record)."""

    jobs: list[str]
    notes: dict = field(default_factory=dict)


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


def autopilot(api: httpx.Client, spec: dict, *, rounds: int, goal: float | None = None, seed: int = 0) -> Repair:
    config = {"max_rounds": rounds, "metric": "val_accuracy", "min_gain": 0.01, "min_confidence": 0.7}
    root = submit(api, spec, autopilot={**config, **({"target": {"val_accuracy": goal}} if goal else {})})
    while True:
        body = api.get(f"/jobs/{root}/lineage").json()
        if body["autopilot"]["state"] == "ended":
            return Repair([s["job_id"] for s in body["steps"]])
        time.sleep(2)


def random_remedy(api: httpx.Client, spec: dict, *, rounds: int, goal: float | None, seed: int = 0) -> Repair:
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
    return Repair(jobs)


def seed_recipe(api: httpx.Client, spec: dict, *, rounds: int = 1, goal: float | None = None, seed: int = 0) -> Repair:
    jobs = [submit(api, spec)]
    wait_done(api, jobs[0])
    jobs.append(fork(api, jobs[0], [], SEED_RECIPE))
    wait_done(api, jobs[-1])
    return Repair(jobs)


def lr_range_test(api: httpx.Client, job_id: str, *, budget_seconds: int | None = None, poll: float = 1.0) -> dict:
    """Request the learning-rate range test on an ended job (`POST /jobs/{id}/probes`) and wait until it ends;
    the probe as the service reads it back (`contract.probes.ProbeRead`), plus the seconds waited for it."""
    body: dict = {"probes": ["lr_range"]}
    if budget_seconds is not None:
        body["budget_seconds"] = budget_seconds
    start = time.perf_counter()
    r = api.post(f"/jobs/{job_id}/probes", json=body)
    if r.status_code != 202:
        raise SystemExit(f"probe refused ({r.status_code}): {r.text}")
    probe_id = r.json()["items"][0]["id"]
    while True:
        probe = api.get(f"/jobs/{job_id}/probes/{probe_id}").json()
        if probe["status"] in PROBE_ENDED:
            return {**probe, "wall_seconds": round(time.perf_counter() - start, 2)}
        time.sleep(poll)


def measured_rate(probe: dict) -> tuple[float | None, str | None]:
    """The range test's suggested rate read the way the autopilot reads it (`analysis.probes.suggested_rate`:
    a succeeded probe, a positive rate), or None and why there is none."""
    if probe["status"] != "succeeded":
        return None, f"the range test {probe['status']}: {probe.get('error') or 'no error recorded'}"
    result = probe.get("result") or {}
    rate = suggested_rate({"lr_range": {**result, "status": probe["status"]}})
    if rate is None or not math.isfinite(rate):
        return None, f"the range test read no rate: {result.get('statement') or 'no statement'}"
    return rate, None


def probe_only(api: httpx.Client, spec: dict, *, rounds: int = 1, goal: float | None = None, seed: int = 0) -> Repair:
    """The planted job, the learning-rate range test on it, and one fork at the test's suggested rate; the root
    alone when the test gives no rate. The probe's seconds are counted apart from the epochs."""
    root = submit(api, spec)
    wait_done(api, root)
    probe = lr_range_test(api, root)
    rate, why_not = measured_rate(probe)
    result = probe.get("result") or {}
    notes = {
        "probe": {
            "id": probe["id"],
            "status": probe["status"],
            "seconds": probe.get("duration_seconds"),
            "wall_seconds": probe["wall_seconds"],
            "suggested_rate": result.get("suggested_rate"),
            "job_rate": result.get("job_rate"),
            "job_rate_verdict": result.get("job_rate_verdict"),
            "truncated": result.get("truncated"),
            "statement": result.get("statement"),
        },
        "learning_rate": rate,
    }
    if rate is None:
        return Repair([root], {**notes, "no_fork": why_not})
    child = fork(api, root, [], {"optimizer": {"learning_rate": rate}})
    wait_done(api, child)
    return Repair([root, child], notes)


STRATEGIES = {
    "autopilot": autopilot,
    "random_remedy": random_remedy,
    "seed_recipe": seed_recipe,
    "probe_only": probe_only,
}
