"""Faults against the embedded default (`plateau-embedded`: SQLite file, kombu's filesystem broker), and the
launcher's promises on both deployments: its worker never outlives it."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time

import pytest

from tests.deployments import Embedded
from tests.flows import TERMINAL, assert_epoch_rows, wait_epochs, wait_status
from tests.procs import wait_for
from tests.specs import running_spec, small_spec

pytestmark = pytest.mark.slow


@pytest.fixture(params=["embedded", "postgres-redis"])
def launcher_env(request, tmp_path) -> Embedded:
    """The launcher on its default stores, or pointed at PostgreSQL + Redis."""
    if request.param == "embedded":
        return Embedded(tmp_path)
    import os

    from tests.conftest import new_database_url

    return Embedded(
        tmp_path,
        PLATEAU_DATABASE_URL=new_database_url(),
        PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"],
        PLATEAU_QUEUE=f"launcher-{tmp_path.name}",
    )


def test_sigterm_and_sigkill_of_the_launcher_leave_no_worker(launcher_env):
    service = launcher_env
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            service.start()
            worker = service.worker_pid()
            assert worker in service.leftovers()
            service.signal_launcher(sig)
            # SIGTERM: the launcher stops its worker; SIGKILL: the kernel (PDEATHSIG) or the worker's parent watch does
            wait_for(
                lambda: not service.leftovers(),
                60,
                lambda: f"after {sig!r} still running: {service.leftovers()}\n{service.all_logs()[-6000:]}",
            )
    finally:
        service.stop()
    # kombu's control exchange files live in the broker folder, never in the current directory
    assert not (service.cwd / "control").exists()
    if service.env["PLATEAU_BROKER_URL"] == "filesystem://":
        assert list((service.home / "broker" / "control").glob("*.exchange"))


def test_cancel_of_a_job_whose_worker_died_ends_it(tmp_path):
    service = Embedded(tmp_path, PLATEAU_RESTART_BACKOFF_SECONDS="600")  # the worker stays dead
    service.start()
    try:
        with service.client() as api:
            jid = api.post("/jobs", json=running_spec(epochs=200)).json()["id"]
            wait_epochs(api, jid, 1, 300, service.logs)
            service.kill_worker()
            time.sleep(float(service.env["PLATEAU_LEASE_SECONDS"]) + 1)  # the lease lapses; nobody renews it
            r = api.post(f"/jobs/{jid}/cancel")
            assert r.status_code == 202 and r.json()["status"] == "cancelled", r.json()
            done = api.get(f"/jobs/{jid}").json()
            assert done["status"] == "cancelled" and done["finished_at"], done
            metrics = api.get("/metrics").text
            assert 'plateau_jobs{state="running"} 0.0' in metrics and jid not in metrics, metrics
    finally:
        service.stop()


def test_broker_folder_wiped_while_a_job_is_queued(tmp_path):
    service = Embedded(tmp_path)
    service.start("--no-worker")
    try:
        with service.client() as api:
            jid = api.post("/jobs", json=small_spec(epochs=1)).json()["id"]
            assert list((service.home / "broker" / "queue").glob("*.msg"))
            shutil.rmtree(service.home / "broker")  # the message was only there
            r = api.get("/readyz")
            assert r.status_code == 503 and "broker" in r.json()["failing"], r.json()
        service.stop()
        service.start()  # the worker's reconciler finds the queued job missing from the broker and sends it again
        with service.client() as api:
            done = wait_status(api, jid, TERMINAL, 300, service.logs)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 1)
            assert any("no longer on the broker" in (e["reason"] or "") for e in done["events"]), done["events"]
    finally:
        service.stop()


def test_sqlite_locked_for_a_while_delays_epochs_but_loses_none(tmp_path):
    service = Embedded(tmp_path, PLATEAU_LEASE_SECONDS="60")
    service.start()
    try:
        with service.client() as api:
            jid = api.post("/jobs", json=running_spec(epochs=6)).json()["id"]
            wait_epochs(api, jid, 1, 300, service.logs)
            db = sqlite3.connect(service.home / "plateau.db", timeout=30, isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")  # every other writer waits (busy_timeout)
            try:
                before = len(api.get(f"/jobs/{jid}/metrics").json()["items"])
                time.sleep(6)  # several epochs' time: their rows wait behind the lock
                assert len(api.get(f"/jobs/{jid}/metrics").json()["items"]) == before
            finally:
                db.execute("COMMIT")
                db.close()
            done = wait_status(api, jid, TERMINAL, 300, service.logs)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 6)
    finally:
        service.stop()
