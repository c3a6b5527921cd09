"""The embedded default against operator faults: a bad broker file, a killed worker, a deleted, read-only or
forgotten SQLite file, a full disk under the broker, and a cursor at the edge of the calendar."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.deployments import Embedded
from tests.flows import TERMINAL, assert_epoch_rows, wait_epochs, wait_status
from tests.procs import ROOT, wait_for
from tests.specs import running_spec, small_spec
from tests.sqlite_app import _reload, sqlite_client


def restarts(api, process: str = "worker") -> float:
    text = api.get("/metrics").text
    found = re.search(rf'^plateau_embedded_restarts_total{{process="{process}"}} (\S+)$', text, re.M)
    assert found, text[-3000:]
    return float(found.group(1))


# --- the broker ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_undecodable_broker_files_are_set_aside_and_the_worker_keeps_serving(tmp_path):
    service = Embedded(tmp_path)
    queue = service.home / "broker" / "queue"
    service.start("--no-worker")
    try:
        with service.client() as api:
            jid = api.post("/jobs", json=small_spec(epochs=1)).json()["id"]
        (message,) = queue.glob("*.gpu.msg")
        message.write_bytes(message.read_bytes()[:100])  # what a full disk leaves: the job's own message, truncated
        (queue / f"0_{uuid.uuid4()}.gpu.msg").write_bytes(b"")  # and an empty one, first in line
        service.stop()
        service.start()  # a worker that reads both
        worker = service.worker_pid()
        with service.client() as api:
            done = wait_status(api, jid, TERMINAL, 300, service.logs)
            assert done["status"] == "succeeded" and done["attempts"] == 1, (done, service.logs())
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 1)
            # its message was rejected: the reconciler found it missing from the broker and sent it again
            assert any("no longer on the broker" in (e["reason"] or "") for e in done["events"]), done["events"]
            assert restarts(api) == 0
        assert service.worker_pid() == worker  # never exited
        rejected = sorted(p.name for p in (service.home / "broker" / "rejected").iterdir())
        assert len(rejected) == 2 and message.name in rejected, rejected
        logs = service.logs(10_000_000)
        assert logs.count('"broker message rejected"') == 2 and message.name in logs
        assert "Unrecoverable error" not in logs
    finally:
        service.stop()


def test_a_failed_enqueue_write_leaves_no_message_file(tmp_path):
    """A write that fails half way (here: a file size limit, as a full disk would) leaves nothing in the queue."""
    folder = tmp_path / "broker"
    script = textwrap.dedent(
        """
        import resource, signal
        from models.broker import TRAIN_TASK, producer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        app = producer()
        with app.connection_for_write() as conn:
            conn.ensure_connection()
            resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # a message is about 1.5 kB
            try:
                app.send_task(TRAIN_TASK, args=["00000000-0000-0000-0000-000000000001"], connection=conn)
            except Exception as exc:
                print("refused:", type(exc).__name__, exc)
        """
    )
    env = {**os.environ, "PLATEAU_BROKER_URL": "filesystem://", "PLATEAU_BROKER_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "File too large" in done.stdout, done.stdout + done.stderr
    assert list((folder / "queue").iterdir()) == [], "a partial message file was left behind"


# --- supervision --------------------------------------------------------------------------------------------


def test_restart_waits_double_up_to_the_cap():
    from api.embedded_worker import restart_wait

    assert [restart_wait(n, first=1, cap=60) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_child_that_keeps_exiting_is_restarted_and_counted():
    from api.embedded_worker import Child, Supervisor
    from api.observability.metrics import REGISTRY

    def counted() -> float:
        return REGISTRY.get_sample_value("plateau_embedded_restarts_total", {"process": "crasher"}) or 0.0

    before = counted()
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Supervisor([child], backoff=0.1, backoff_max=0.2)
    supervisor.start()
    try:
        wait_for(lambda: child.restarts >= 3, 30)
    finally:
        supervisor.stop(timeout=5)
    assert child.exit_code == 3
    assert counted() - before == child.restarts
    assert child.process.poll() is not None  # stopped: nothing restarts it after `stop`


@pytest.mark.slow
def test_killed_worker_is_restarted_and_its_expired_job_requeued_meanwhile(tmp_path):
    # the first restart waits longer than the lease: only the launcher's own reconciler can requeue the job
    service = Embedded(tmp_path, PLATEAU_RESTART_BACKOFF_SECONDS="15")
    service.start()
    try:
        with service.client() as api:
            jid = api.post("/jobs", json=running_spec(epochs=4)).json()["id"]
            wait_epochs(api, jid, 2, 300, service.logs)
            first = service.worker_pid()
            os.kill(first, signal.SIGKILL)
            killed_at = len(api.get(f"/jobs/{jid}/metrics").json()["items"])
            r = wait_for(lambda: (r := api.get("/readyz")).status_code == 503 and r, 10)
            assert list(r.json()["failing"]) == ["worker"], r.json()
            # no worker alive, yet the lease lapses and the job goes back to the queue
            wait_status(api, jid, {"queued"}, 30, service.logs)
            assert api.get("/readyz").status_code == 503
            wait_for(lambda: api.get("/readyz").status_code == 200, 60, service.logs)
            assert service.worker_pid() != first
            assert restarts(api) == 1
            done = wait_status(api, jid, TERMINAL, 400, service.logs)
            assert done["status"] == "succeeded" and done["attempts"] == 2, done
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 4)
            assert any("lease expired" in (e["reason"] or "") for e in done["events"]), done["events"]
            resumed = [e for e in done["events"] if e["kind"] == "state" and e["to_status"] == "running"]
            assert [e["data"]["attempt"] for e in resumed] == [1, 2]
            assert resumed[1]["reason"].startswith("resumed from the last checkpoint"), resumed
        logs = service.logs(10_000_000)
        assert '"embedded child exited"' in logs and '"embedded child restarting"' in logs
        # resumed, not restarted: both workers together trained each epoch once (the one the kill interrupted may
        # be trained twice); a restart from scratch would log killed_at + 4
        assert logs.count("epoch recorded") <= 4 + 1 < killed_at + 4, (killed_at, logs.count("epoch recorded"))
    finally:
        service.stop()
    assert not service.leftovers()


# --- the database -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_deleting_the_sqlite_file_fails_readiness_and_refuses_writes(tmp_path):
    service = Embedded(tmp_path)
    service.start("--no-worker")
    try:
        with service.client() as api:
            assert api.post("/jobs", json=small_spec(epochs=1)).status_code == 202
            (service.home / "plateau.db").unlink()
            r = api.get("/readyz")
            assert r.status_code == 503 and "deleted" in r.json()["failing"]["database"], r.json()
            r = api.post("/jobs", json=small_spec(epochs=1))
            assert r.status_code == 503 and r.headers["retry-after"], (r.status_code, r.text)
            assert "deleted" in r.json()["detail"]
            assert not (service.home / "plateau.db").exists()  # no empty database took its place
    finally:
        service.stop()


@pytest.mark.slow
def test_a_missing_database_with_an_earlier_life_is_not_recreated_unless_told(tmp_path):
    service = Embedded(tmp_path)
    db = service.home / "plateau.db"
    service.start("--no-worker")
    with service.client() as api:
        assert api.post("/jobs", json=small_spec(epochs=1)).status_code == 202
    service.launcher.kill(signal.SIGKILL)  # no clean close: the WAL file stays
    service.launcher.p.wait(10)
    assert db.with_name("plateau.db-wal").exists()
    db.unlink()
    with pytest.raises(AssertionError):
        service.start("--no-worker")
    assert service.launcher.p.wait(30) != 0
    assert "plateau.db-wal" in service.logs() and "PLATEAU_INIT_NEW_DATABASE" in service.logs(), service.logs()
    assert not db.exists()
    db.with_name("plateau.db-wal").unlink()  # no WAL now, but the artifacts of earlier jobs
    (service.tmp / "artifacts" / str(uuid.uuid4())).mkdir(parents=True)
    with pytest.raises(AssertionError):
        service.start("--no-worker")
    assert "artifacts of earlier jobs" in service.logs(), service.logs()
    service.start("--no-worker", "--init-new-database")
    try:
        with service.client() as api:
            assert api.get("/jobs").json()["items"] == []
    finally:
        service.stop()


def test_a_read_only_database_answers_503_with_retry_after(tmp_path):
    with sqlite_client(tmp_path) as client:
        assert client.post("/jobs", json=small_spec(epochs=1)).status_code == 202
        os.environ["PLATEAU_DATABASE_URL"] = f"sqlite:///file:{tmp_path}/plateau.db?mode=ro&uri=true"
        _reload()  # the same file, opened read-only: SQLite refuses every write
        r = client.post("/jobs", json=small_spec(epochs=1))
        assert r.status_code == 503 and r.headers["content-type"] == "application/json", (r.status_code, r.text)
        assert int(r.headers["retry-after"]) > 0 and "read-only" in r.json()["detail"], r.json()
        assert len(client.get("/jobs").json()["items"]) == 1  # reads still work
        r = client.get("/readyz")
        assert r.status_code == 503 and "read-only" in r.json()["failing"]["database"], r.json()


def test_a_read_only_postgresql_answers_503_with_retry_after(client):
    """PostgreSQL refusing writes (a hot standby, `default_transaction_read_only`): SQLSTATE 25006 is a 503."""
    from sqlalchemy import event

    from models.db import get_engine

    engine = get_engine()

    def read_only(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = on")
        dbapi_conn.commit()

    event.listen(engine, "connect", read_only)
    engine.dispose()
    try:
        r = client.post("/jobs", json=small_spec(epochs=1))
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0, (r.status_code, r.text)
        assert "25006" in r.json()["detail"], r.json()
        assert client.get("/jobs").status_code == 200
    finally:
        event.remove(engine, "connect", read_only)
        engine.dispose()
        get_engine.cache_clear()  # a fresh engine: readiness forgets the refused write


# --- inputs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_cursor_at_the_edge_of_the_calendar_is_422(client, moment):
    cursor = base64.urlsafe_b64encode(f"{moment}|{uuid.uuid4()}".encode()).decode()
    r = client.get("/jobs", params={"cursor": cursor})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "cursor"]
