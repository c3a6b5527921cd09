"""Faults against the real components: each test kills, stops or restarts one and checks nothing was lost."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_database_url
from tests.flows import TERMINAL, assert_epoch_rows, wait_epochs, wait_status
from tests.procs import start_api, start_worker, wait_for
from tests.services import PrivatePostgres, PrivateRedis
from tests.specs import running_spec, small_spec

pytestmark = pytest.mark.slow


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PLATEAU_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
        "PLATEAU_LEASE_SECONDS": "6",
        "PLATEAU_RECONCILE_INTERVAL": "1",
        "PLATEAU_CANCEL_POLL_SECONDS": "0.5",
        "PLATEAU_REQUEUE_AFTER": "3",
        "PLATEAU_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "PLATEAU_DATABASE_URL": extra.pop("PLATEAU_DATABASE_URL", None) or new_database_url(),
        **extra,
    }


def events_of(api: httpx.Client, job_id: str) -> list[dict]:
    return api.get(f"/jobs/{job_id}").json()["events"]


def test_redis_restarted_empty_loses_no_queued_job(tmp_path):
    redis_server = PrivateRedis(tmp_path / "redis.log")
    env = base_env(tmp_path, PLATEAU_BROKER_URL=redis_server.url)
    api_proc, url = start_api(env, tmp_path / "api.log")
    worker = None
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            jobs = [api.post("/jobs", json=small_spec(epochs=1, name=f"q{i}")).json()["id"] for i in range(2)]
            redis_server.kill()  # both messages were only in Redis memory
            r = api.get("/readyz")
            assert r.status_code == 503 and "broker" in r.json()["failing"]
            redis_server.start()  # same port, empty
            wait_for(lambda: api.get("/readyz").status_code == 200, 30)
            worker = start_worker(env, tmp_path / "worker.log")
            for jid in jobs:
                done = wait_status(api, jid, TERMINAL, 400, worker.tail)
                assert done["status"] == "succeeded" and done["attempts"] == 1, done
                assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 1)
                assert any("no longer on the broker" in (e["reason"] or "") for e in done["events"])
    finally:
        if worker:
            worker.stop()
        api_proc.stop()
        redis_server.close()


def test_postgres_outage_loses_no_epoch_and_both_recover(tmp_path):
    pg = PrivatePostgres()
    env = base_env(tmp_path, PLATEAU_DATABASE_URL=pg.url, PLATEAU_LEASE_SECONDS="60")
    api_proc, url = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            jid = api.post("/jobs", json=running_spec(epochs=6)).json()["id"]
            wait_epochs(api, jid, 1, 300, worker.tail)
            pg.stop()
            r = api.get("/readyz")
            assert r.status_code == 503 and list(r.json()["failing"]) == ["database"]
            # let at least one epoch end while the database is away: its write must wait, not vanish
            wait_for(lambda: _failed_write(worker), 120, worker.tail)
            pg.start()
            wait_for(lambda: api.get("/readyz").status_code == 200, 30)
            done = wait_status(api, jid, TERMINAL, 400, worker.tail)
            assert done["status"] == "succeeded", done
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 6)
    finally:
        worker.stop()
        api_proc.stop()
        pg.close()


def _failed_write(worker) -> bool:
    return "database write failed; retrying" in worker.tail(1_000_000)


def test_sigterm_hands_the_job_back_and_another_worker_resumes_it(tmp_path):
    env = base_env(tmp_path, PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"])
    api_proc, url = start_api(env, tmp_path / "api.log")
    first = start_worker(env, tmp_path / "worker-1.log", name="first")
    second = None
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            jid = api.post("/jobs", json=running_spec(epochs=5)).json()["id"]
            wait_epochs(api, jid, 2, 300, first.tail)
            first.kill(signal.SIGTERM)
            wait_for(
                lambda: any(
                    e["to_status"] == "queued" and "worker shut down" in (e["reason"] or "")
                    for e in events_of(api, jid)
                ),
                60,
                first.tail,
            )
            first.p.wait(60)
            assert api.get(f"/jobs/{jid}").json()["status"] == "queued"
            second = start_worker(env, tmp_path / "worker-2.log", name="second")
            done = wait_status(api, jid, TERMINAL, 400, second.tail)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 5)
            assert second.tail(1_000_000).count("epoch recorded") < 5  # resumed, not restarted
    finally:
        for w in (first, second):
            if w:
                w.stop()
        api_proc.stop()


def test_job_longer_than_visibility_timeout_runs_once(tmp_path):
    env = base_env(
        tmp_path,
        PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"],
        PLATEAU_VISIBILITY_TIMEOUT="4",
        PLATEAU_BROKER_TRANSPORT_OPTIONS='{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}',
        PLATEAU_LEASE_SECONDS="30",
    )
    api_proc, url = start_api(env, tmp_path / "api.log")
    workers = [start_worker(env, tmp_path / f"worker-{i}.log", name=f"v{i}") for i in (1, 2)]
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            jid = api.post("/jobs", json=running_spec(epochs=3)).json()["id"]
            done = wait_status(api, jid, TERMINAL, 400, lambda: workers[0].tail() + workers[1].tail())
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 3)
            # Redis did hand the message out again while it ran; the second copy saw the live lease and stood down
            assert any(e["kind"] == "delivery_skipped" for e in done["events"]), done["events"]
            claimed = sum(w.tail(1_000_000).count("job claimed") for w in workers)
            assert claimed == 1
    finally:
        for w in workers:
            w.stop()
        api_proc.stop()


def test_job_fails_after_the_attempt_limit(tmp_path):
    env = base_env(tmp_path, PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"], PLATEAU_MAX_ATTEMPTS="1")
    api_proc, url = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker-1.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            jid = api.post("/jobs", json=running_spec(epochs=20)).json()["id"]
            wait_epochs(api, jid, 1, 300, worker.tail)
            worker.kill(signal.SIGKILL)
            worker.p.wait(10)
            worker = start_worker(env, tmp_path / "worker-2.log", name="w2")
            done = wait_status(api, jid, TERMINAL, 120, worker.tail)
            assert done["status"] == "failed" and "gave up after 1 attempts" in done["error"], done
    finally:
        worker.stop()
        api_proc.stop()


def test_api_restarted_under_load_keeps_every_accepted_job(tmp_path):
    env = base_env(
        tmp_path, PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"], PLATEAU_MAX_ACTIVE_JOBS_PER_TENANT="10000"
    )
    api_proc, url = start_api(env, tmp_path / "api-1.log")
    accepted: list[str] = []
    stop = threading.Event()

    def submit_loop():
        with httpx.Client(base_url=url, timeout=5) as c:
            while not stop.is_set():
                try:
                    r = c.post("/jobs", json=small_spec(epochs=1, name="load"))
                except httpx.HTTPError:
                    continue
                if r.status_code == 202:
                    accepted.append(r.json()["id"])

    threads = [threading.Thread(target=submit_loop) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(accepted) >= 20, 60)
    api_proc.kill(signal.SIGKILL)  # mid-request for some of the four clients
    api_proc.p.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    api_proc, url2 = start_api(env, tmp_path / "api-2.log")
    try:
        with httpx.Client(base_url=url2, timeout=30) as api:
            for jid in accepted:
                assert api.get(f"/jobs/{jid}").status_code == 200, jid
    finally:
        api_proc.stop()
