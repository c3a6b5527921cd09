"""Soak, bounded and on loopback: short jobs stream through while the worker is killed (-9) and brought back at
random. Every job must end, each with every epoch row exactly once, and no process may be left over."""

from __future__ import annotations

import random
import time

import pytest

from tests.deployments import Embedded, Separate
from tests.flows import TERMINAL, assert_epoch_rows
from tests.procs import wait_for
from tests.specs import small_spec

pytestmark = pytest.mark.slow

JOBS = 20
BUDGET_SECONDS = 220  # per deployment, on two cores


@pytest.mark.parametrize("kind", [Embedded, Separate], ids=["embedded", "postgres-redis"])
def test_jobs_survive_random_worker_kills(kind, tmp_path):
    rng = random.Random(20261201)
    # enough attempts that a job killed more than once still ends by succeeding, not by the attempt limit
    service = kind(tmp_path, PLATEAU_MAX_ATTEMPTS="20", PLATEAU_MAX_ACTIVE_JOBS_PER_TENANT="1000")
    service.start()
    started = time.monotonic()
    epochs: dict[str, int] = {}
    kills = 0
    try:
        with service.client() as api:
            for i in range(JOBS):
                n = 1 + i % 2
                r = api.post("/jobs", json=small_spec(epochs=n, name=f"soak-{i}"))
                assert r.status_code == 202, r.text
                epochs[r.json()["id"]] = n
        while unfinished(service, epochs) and time.monotonic() - started < BUDGET_SECONDS * 0.6:
            time.sleep(rng.uniform(2, 10))
            service.kill_worker()
            kills += 1
            service.restart_worker()  # the embedded launcher comes back on a new port: a new client each time
        # the kills stop after their share of the budget; the rest drains (more slowly on a busy machine)
        wait_for(lambda: not unfinished(service, epochs), max(BUDGET_SECONDS - (time.monotonic() - started), 180),
                 lambda: f"unfinished after {kills} kills: {stuck(service, epochs)}", interval=2)
        assert kills >= 2
        with service.client() as api:
            for jid, n in epochs.items():
                job = api.get(f"/jobs/{jid}").json()
                assert job["status"] == "succeeded", job
                assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], n)
    finally:
        service.stop()
    wait_for(lambda: not service.leftovers(), 30, lambda: f"left over: {service.leftovers()}")


def unfinished(service, epochs: dict[str, int]) -> list[str]:
    with service.client() as api:
        return [j for j in epochs if api.get(f"/jobs/{j}").json()["status"] not in TERMINAL]


def stuck(service, epochs: dict[str, int]) -> list[tuple]:
    """Each unfinished job's status, attempts and last three events: enough to tell slow from stuck."""
    with service.client() as api:
        jobs = [api.get(f"/jobs/{j}").json() for j in unfinished(service, epochs)]
    return [(j["id"], j["status"], j["attempts"], [(e["kind"], e["reason"]) for e in j["events"][-3:]]) for j in jobs]
