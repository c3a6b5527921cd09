"""Soak, bounded and on loopback: short jobs stream through while the worker is killed (-9) at random points of
their training and brought back. Every job must end, each with every epoch row exactly once, and no process may
be left over. Sized for about two minutes a deployment on two cores: a kill costs a worker start, and each job a
model build, so a few kills over a dozen jobs prove as much as more of either."""

from __future__ import annotations

import random
import time

import pytest

from tests.deployments import Embedded, Separate
from tests.flows import TERMINAL, assert_epoch_rows
from tests.procs import wait_for
from tests.specs import small_spec

pytestmark = pytest.mark.slow

JOBS = 6
KILLS = 2
DRAIN_SECONDS = 240  # after the last kill; ~5 s a job once the worker is warm, so this is slack, not the plan


@pytest.mark.parametrize("kind", [Embedded, Separate], ids=["embedded", "postgres-redis"])
def test_jobs_survive_random_worker_kills(kind, tmp_path):
    rng = random.Random(20261201)
    # enough attempts that a job killed more than once still ends by succeeding, not by the attempt limit; a short
    # lease so a killed worker's job is requeued soon after the new worker's first reconcile pass
    service = kind(
        tmp_path,
        PLATEAU_MAX_ATTEMPTS="20",
        PLATEAU_MAX_ACTIVE_JOBS_PER_TENANT="1000",
        PLATEAU_LEASE_SECONDS="4",
        PLATEAU_REQUEUE_AFTER="2",
    )
    service.start()
    epochs: dict[str, int] = {}
    kills = 0
    try:
        with service.client() as api:
            for i in range(JOBS):
                n = 1 + i % 2
                r = api.post("/jobs", json=small_spec(epochs=n, name=f"soak-{i}"))
                assert r.status_code == 202, r.text
                epochs[r.json()["id"]] = n
        for _ in range(KILLS):
            # a kill lands while some job is claimed, at a random point of its model build or training
            wait_for(
                lambda: running(service, epochs) or not unfinished(service, epochs),
                120,
                lambda: f"nothing runs: {stuck(service, epochs)}",
                interval=0.5,
            )
            if not unfinished(service, epochs):
                break
            time.sleep(rng.uniform(0.5, 4))
            service.kill_worker()
            kills += 1
            service.restart_worker()  # the embedded launcher comes back on a new port: a new client each time
        wait_for(
            lambda: not unfinished(service, epochs),
            DRAIN_SECONDS,
            lambda: f"unfinished after {kills} kills: {stuck(service, epochs)}",
            interval=1,
        )
        assert kills >= 2
        with service.client() as api:
            jobs = [api.get(f"/jobs/{jid}").json() for jid in epochs]
            for job in jobs:
                assert job["status"] == "succeeded", job
                assert_epoch_rows(api.get(f"/jobs/{job['id']}/metrics").json()["items"], epochs[job["id"]])
        assert any(j["attempts"] >= 2 for j in jobs), "no kill hit a claimed job"
    finally:
        service.stop()
    wait_for(lambda: not service.leftovers(), 30, lambda: f"left over: {service.leftovers()}")


def statuses(service, epochs: dict[str, int]) -> dict[str, str]:
    with service.client() as api:
        return {j: api.get(f"/jobs/{j}").json()["status"] for j in epochs}


def unfinished(service, epochs: dict[str, int]) -> list[str]:
    return [j for j, s in statuses(service, epochs).items() if s not in TERMINAL]


def running(service, epochs: dict[str, int]) -> bool:
    return "running" in statuses(service, epochs).values()


def stuck(service, epochs: dict[str, int]) -> str:
    """Each unfinished job's status, attempts, last events and last log lines: enough to tell slow from stuck."""
    with service.client() as api:
        jobs = [api.get(f"/jobs/{j}").json() for j in unfinished(service, epochs)]
    logs = service.all_logs().splitlines()
    return "\n".join(
        f"{j['id']} {j['status']} attempts={j['attempts']} "
        f"events={[(e['kind'], e['reason']) for e in j['events'][-5:]]}\n  "
        + "\n  ".join([line for line in logs if j["id"] in line][-5:])
        for j in jobs
    )
