"""The Python SDK and the `plateau` CLI against a real API process; training is simulated in the database."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import update
from sqlmodel import select
from typer.testing import CliRunner

from client.cli import app
from client.sdk import PlateauClient, PlateauConnectionError, PlateauError
from contract.spec import JobSpec
from models.db import session_scope
from models.lifecycle import record_event, upsert_epoch
from models.tables import Job, utcnow
from tests.procs import free_port, start_api
from tests.specs import small_spec

PREFIX = "client-test"
PLATEAU = Path(sys.executable).parent / "plateau"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    proc, url = start_api({}, tmp_path_factory.mktemp("client-api") / "api.log")
    yield url
    proc.stop()
    with session_scope() as s:  # leave no active jobs behind for the per-tenant limit
        s.execute(
            update(Job)
            .where(Job.name.like(f"{PREFIX}%"), Job.status.in_(["queued", "running"]))
            .values(status="cancelled")
        )
        s.commit()


@pytest.fixture(scope="module")
def sdk(api):
    with PlateauClient(api, timeout=10) as c:
        yield c


@pytest.fixture
def cli(api):
    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(app, ["--url", api, *args], env=env)

    return invoke


def spec(**overrides) -> dict:
    return small_spec(name=f"{PREFIX}-{uuid.uuid4().hex[:8]}", **overrides)


def epoch_row(n: int, *, overfit: bool = False) -> dict:
    if overfit:
        return {
            "epoch": n,
            "loss": 1.0 / n,
            "accuracy": min(1.0, 0.5 + 0.06 * n),
            "learning_rate": 1e-3,
            "train_eval_loss": 0.9 / n,
            "train_eval_accuracy": min(1.0, 0.5 + 0.06 * n),
            "val_loss": 0.8 + 0.05 * max(0, n - 3),
            "val_accuracy": 0.6,
            "epoch_seconds": 1.5,
        }
    return {
        "epoch": n,
        "loss": 1.0 / n,
        "accuracy": 0.5 + 0.04 * n,
        "val_loss": 1.02 / n,
        "val_accuracy": 0.5 + 0.04 * n,
        "learning_rate": 1e-3,
        "epoch_seconds": 1.5,
    }


def set_status(job_id, status: str, reason: str | None = None, **values) -> None:
    jid = uuid.UUID(str(job_id))
    with session_scope() as s:
        previous = s.exec(select(Job.status).where(Job.id == jid)).one()
        if status in ("succeeded", "failed", "cancelled"):
            values["finished_at"] = utcnow()
        s.execute(update(Job).where(Job.id == jid).values(status=status, **values))
        record_event(s, jid, "state", from_status=previous, to_status=status, reason=reason)
        s.commit()


def add_epochs(job_id, epochs, **kw) -> None:
    with session_scope() as s:
        for n in epochs:
            upsert_epoch(s, uuid.UUID(str(job_id)), epoch_row(n, **kw))


def finished_job(sdk: PlateauClient, n: int = 10, status: str = "succeeded", overfit: bool = True) -> str:
    jid = str(sdk.submit(spec(epochs=n)).id)
    set_status(jid, "running", "started")
    add_epochs(jid, range(1, n + 1), overfit=overfit)
    set_status(
        jid,
        status,
        "out of memory" if status == "failed" else None,
        **({"error": "out of memory"} if status == "failed" else {}),
    )
    return jid


def simulate_training(name: str, epochs: int, final: str, delay: float = 0.2) -> threading.Thread:
    """A stand-in worker: waits for the job named `name` to appear, then trains it and ends it with `final`."""

    def run():
        deadline = time.monotonic() + 30
        jid = None
        while jid is None and time.monotonic() < deadline:
            with session_scope() as s:
                jid = s.exec(select(Job.id).where(Job.name == name)).first()
            time.sleep(0.05)
        if jid is None:
            return
        time.sleep(delay)
        set_status(jid, "running", "started")
        for n in range(1, epochs + 1):
            time.sleep(delay)
            add_epochs(jid, [n])
        time.sleep(delay)
        set_status(
            jid,
            final,
            "the worker ran out of memory" if final == "failed" else None,
            **({"error": "the worker ran out of memory"} if final == "failed" else {}),
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- SDK -----------------------------------------------------------------------------------------------------------


def test_submit_validates_and_is_idempotent(sdk):
    s = spec()
    key = f"key-{uuid.uuid4()}"
    first = sdk.submit(s, idempotency_key=key)
    assert first.status == "queued" and first.spec["epochs"] == 3 and first.name == s["name"]
    again = sdk.submit(s, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(PlateauError) as exc:
        sdk.submit({**s, "epochs": 4}, idempotency_key=key)
    assert exc.value.status_code == 409

    from_model = sdk.submit(JobSpec.model_validate(spec(epochs=2)))
    assert from_model.spec["epochs"] == 2 and from_model.id != first.id

    with pytest.raises(PlateauError) as exc:  # refused here, by the spec schema, before any request
        sdk.submit({**s, "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 10}})
    assert exc.value.status_code == 422
    assert [e["loc"] for e in exc.value.field_errors] == [["body", "dataset", "image_size"]]

    with pytest.raises(PlateauError) as exc:  # refused by the service: the folder does not exist
        sdk.submit({**s, "dataset": {"train_dir": "nowhere/train", "val_dir": "shapes/val"}})
    assert exc.value.status_code == 422 and "dataset.train_dir" in exc.value.message


def test_jobs_pages_through_the_cursor(sdk):
    made = [sdk.submit(spec()).id for _ in range(3)]
    newest = list(sdk.jobs(limit=3, page_size=1))
    assert [j.id for j in newest] == made[::-1]
    everything = [j.id for j in sdk.jobs(page_size=2)]
    assert set(made) <= set(everything) and len(everything) == len(set(everything))
    set_status(made[0], "failed", "broken", error="broken")
    assert made[0] in [j.id for j in sdk.jobs(status="failed")]
    assert all(j.status == "failed" for j in sdk.jobs(status="failed"))


def test_job_and_not_found(sdk):
    jid = finished_job(sdk, n=3)
    job = sdk.job(jid)
    assert str(job.id) == jid and job.status == "succeeded"
    assert [e.to_status for e in job.events if e.kind == "state"] == ["queued", "running", "succeeded"]
    with pytest.raises(PlateauError) as exc:
        sdk.job(uuid.uuid4())
    assert exc.value.status_code == 404 and "not found" in exc.value.message


def test_metrics_and_follow_until_terminal(sdk):
    jid = finished_job(sdk, n=4)
    assert [r.epoch for r in sdk.metrics(jid)] == [1, 2, 3, 4]
    assert [r.epoch for r in sdk.metrics(jid, after_epoch=2)] == [3, 4]
    assert [r.epoch for r in sdk.metrics(jid, page_size=1)] == [1, 2, 3, 4]

    s = spec(epochs=3)
    trainer = simulate_training(s["name"], epochs=3, final="succeeded", delay=0.15)
    job = sdk.submit(s)
    rows = list(sdk.follow_metrics(job.id, poll=0.1))
    trainer.join(10)
    assert [r.epoch for r in rows] == [1, 2, 3]
    assert sdk.job(job.id).status == "succeeded"


def test_analysis_with_rules_and_params(sdk):
    jid = finished_job(sdk, overfit=True)
    found = sdk.analysis(jid)
    assert found.verdict == "stagnating" and any(f.cause == "overfitting" for f in found.findings)
    only = sdk.analysis(jid, rules=["overfitting"], params={"overfitting": {"min_gap": 0.9}})
    assert not any(f.cause == "overfitting" for f in only.findings)
    flat = sdk.analysis(jid, params={"overfitting.min_gap": 0.9})
    assert not any(f.cause == "overfitting" for f in flat.findings)
    with pytest.raises(PlateauError) as exc:
        sdk.analysis(jid, rules=["astrology"])
    assert exc.value.status_code == 422


def test_cancel_and_fork(sdk):
    job = sdk.submit(spec())
    assert sdk.cancel(job.id).status == "cancelled"
    with pytest.raises(PlateauError) as exc:
        sdk.cancel(job.id)
    assert exc.value.status_code == 409

    jid = finished_job(sdk, overfit=True)
    over = next(f for f in sdk.analysis(jid).findings if f.cause == "overfitting")
    remedy = next(r for r in over.remedies if r.patch)
    child = sdk.fork(jid, apply=[remedy.id], patch={"epochs": 7})
    assert str(child.parent_id) == jid and child.spec["epochs"] == 7 and child.status == "queued"
    assert sdk.job(jid).children == [child.id]
    with pytest.raises(PlateauError) as exc:
        sdk.fork(jid, apply=["sacrifice_a_goat"])
    assert exc.value.status_code == 422


def test_token_and_idempotency_key_are_sent_as_headers():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"detail": "job x not found"})

    with PlateauClient("http://plateau.test/", token="plt_secret", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(PlateauError):
            c.submit(spec(), idempotency_key="k1")
        with pytest.raises(PlateauError) as exc:
            list(c.events("abc", last_event_id="4-2"))
    assert exc.value.status_code == 404 and exc.value.detail == "job x not found"
    assert all(r.headers["authorization"] == "Bearer plt_secret" for r in seen)
    assert seen[0].headers["idempotency-key"] == "k1" and seen[0].url.path == "/jobs"
    assert seen[1].headers["last-event-id"] == "4-2" and seen[1].headers["accept"] == "text/event-stream"


def test_unreachable_service_is_a_connection_error():
    with PlateauClient(f"http://127.0.0.1:{free_port()}", timeout=2) as dead:
        with pytest.raises(PlateauConnectionError) as exc:
            dead.job(uuid.uuid4())
        assert exc.value.status_code is None
        with pytest.raises(PlateauConnectionError):
            list(dead.events(uuid.uuid4()))


# -- CLI -----------------------------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, value) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(value) if name.endswith((".yaml", ".yml")) else json.dumps(value))
    return str(path)


def test_cli_submit_json_and_idempotency(cli, tmp_path):
    path = write(tmp_path, "job.yaml", spec())
    r = cli("submit", path, "--json", "-k", "cli-key-" + uuid.uuid4().hex)
    assert r.exit_code == 0, r.output
    job = json.loads(r.stdout)
    assert job["status"] == "queued" and job["spec"]["dataset"]["train_dir"] == "shapes/train"
    key = "cli-key-" + uuid.uuid4().hex
    first = json.loads(cli("submit", path, "--json", "-k", key).stdout)
    again = json.loads(cli("submit", path, "--json", "-k", key).stdout)
    assert first["id"] == again["id"]
    other = write(tmp_path, "other.json", spec())
    r = cli("submit", other, "-k", key)
    assert r.exit_code == 5 and "Idempotency-Key" in r.stderr

    r = cli("submit", write(tmp_path, "plain.json", spec()))
    assert r.exit_code == 0 and "submitted job" in r.stdout


def test_cli_bad_spec_exits_2_naming_the_field(cli, tmp_path):
    bad = spec()
    bad["dataset"]["image_size"] = 10
    bad["regularization"] = {"dropout": 3}
    r = cli("submit", write(tmp_path, "bad.yaml", bad))
    assert r.exit_code == 2
    assert "dataset.image_size" in r.stderr and "regularization.dropout" in r.stderr

    missing = spec(dataset={"train_dir": "nowhere/train", "val_dir": "shapes/val", "image_size": 75})
    r = cli("submit", write(tmp_path, "missing.json", missing))
    assert r.exit_code == 2 and "dataset.train_dir" in r.stderr and "does not exist" in r.stderr

    assert cli("submit", str(tmp_path / "absent.yaml")).exit_code == 2
    (tmp_path / "broken.json").write_text("{not json")
    r = cli("submit", str(tmp_path / "broken.json"))
    assert r.exit_code == 2 and "not valid JSON" in r.stderr
    r = cli("fork", str(uuid.uuid4()), "--patch", "[1, 2")
    assert r.exit_code == 2 and "--patch" in r.stderr


def test_cli_jobs_show_metrics_analyze(cli, sdk):
    jid = finished_job(sdk, n=10, overfit=True)

    r = cli("jobs", "--json", "--limit", "5")
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    assert jid in [j["id"] for j in listed] and len(listed) <= 5
    r = cli("jobs", "--status", "succeeded", "--json")
    assert all(j["status"] == "succeeded" for j in json.loads(r.stdout))
    r = cli("jobs", "-n", "3")
    assert r.exit_code == 0 and "STATUS" in r.stdout

    r = cli("show", jid, "--json")
    shown = json.loads(r.stdout)
    assert r.exit_code == 0 and shown["id"] == jid and shown["last_epoch"]["epoch"] == 10
    r = cli("show", jid)
    assert r.exit_code == 0 and "succeeded" in r.stdout and "running → succeeded" in r.stdout

    r = cli("metrics", jid, "--json")
    assert [row["epoch"] for row in json.loads(r.stdout)] == list(range(1, 11))
    r = cli("metrics", jid, "--after", "8")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].split()[0] == "epoch" and len(r.stdout.splitlines()) == 3

    r = cli("analyze", jid, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "stagnating"
    r = cli("analyze", jid)
    assert r.exit_code == 0 and "overfitting" in r.stdout and f"plateau fork {jid} --apply" in r.stdout
    r = cli("analyze", jid, "-r", "overfitting", "-p", "overfitting.min_gap=0.9", "--json")
    assert r.exit_code == 0 and not json.loads(r.stdout)["findings"]
    assert cli("analyze", jid, "-p", "nodot").exit_code == 2


def test_cli_metrics_follow_ends_on_terminal_job(cli, sdk):
    done = finished_job(sdk, n=3, overfit=False)
    r = cli("metrics", done, "--follow", "--poll", "0.1")
    assert r.exit_code == 0, r.output
    assert [line.split()[0] for line in r.stdout.splitlines()[1:4]] == ["1", "2", "3"]
    assert "succeeded" in r.stdout

    failed = finished_job(sdk, n=2, status="failed", overfit=False)
    r = cli("metrics", failed, "--follow", "--json", "--poll", "0.1")
    assert r.exit_code == 1
    assert [json.loads(line)["epoch"] for line in r.stdout.splitlines()] == [1, 2]


def test_cli_not_found_is_3(cli):
    missing = str(uuid.uuid4())
    for args in (
        ("show", missing),
        ("metrics", missing),
        ("analyze", missing),
        ("cancel", missing),
        ("fork", missing, "--patch", "{}"),
    ):
        r = cli(*args)
        assert r.exit_code == 3, (args, r.output)
        assert "not found" in r.stderr
    assert cli("show", "not-a-uuid").exit_code == 2


def test_cli_cancel_and_conflict(cli, sdk):
    job = sdk.submit(spec())
    r = cli("cancel", str(job.id))
    assert r.exit_code == 0 and "cancelled" in r.stdout
    r = cli("cancel", str(job.id))
    assert r.exit_code == 5 and "only queued or running jobs can be cancelled" in r.stderr

    running = sdk.submit(spec())
    set_status(running.id, "running", "started")
    r = cli("cancel", str(running.id), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["cancel_requested"] is True


def test_cli_fork(cli, sdk):
    jid = finished_job(sdk, overfit=True)
    over = next(f for f in sdk.analysis(jid).findings if f.cause == "overfitting")
    remedy = next(r for r in over.remedies if r.patch)
    r = cli("fork", jid, "--apply", remedy.id, "--patch", '{"epochs": 6, "batch_size": 4}', "--json")
    assert r.exit_code == 0, r.output
    child = json.loads(r.stdout)
    assert child["parent_id"] == jid and child["spec"]["epochs"] == 6 and child["spec"]["batch_size"] == 4
    r = cli("fork", jid, "--apply", "sacrifice_a_goat")
    assert r.exit_code == 2 and "available" in r.stderr


@pytest.mark.timeout(60)
def test_cli_watch_exits_1_when_the_job_fails(cli, tmp_path):
    s = spec(epochs=3)
    trainer = simulate_training(s["name"], epochs=2, final="failed")
    r = cli("submit", write(tmp_path, "watch.yaml", s), "--watch")
    trainer.join(10)
    assert r.exit_code == 1, r.output
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines if ln.strip() and ln.split()[0] in ("1", "2")] == ["1", "2"]
    assert "running → failed" in r.stdout and "the worker ran out of memory" in r.stdout
    assert "verdict:" in r.stdout


@pytest.mark.timeout(60)
def test_cli_watch_json_succeeds(cli, tmp_path):
    s = spec(epochs=2)
    trainer = simulate_training(s["name"], epochs=2, final="succeeded", delay=0.1)
    r = cli("submit", write(tmp_path, "watch.json", s), "--watch", "--json")
    trainer.join(10)
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [ln["data"]["epoch"] for ln in lines if ln["event"] == "epoch"] == [1, 2]
    assert lines[-2]["event"] == "end"
    assert lines[-1]["event"] == "result" and lines[-1]["job"]["status"] == "succeeded"
    assert lines[-1]["analysis"]["verdict"]


def test_cli_url_from_env_and_connection_error(api, sdk):
    runner = CliRunner()
    jid = finished_job(sdk, n=2, overfit=False)
    r = runner.invoke(app, ["show", jid, "--json"], env={"PLATEAU_URL": api})
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == jid
    r = runner.invoke(app, ["--url", f"http://127.0.0.1:{free_port()}", "jobs"])
    assert r.exit_code == 4 and "cannot reach" in r.stderr


def test_cli_as_a_real_process(api, sdk):
    jid = finished_job(sdk, n=3, overfit=False)
    done = subprocess.run(
        [str(PLATEAU), "show", jid, "--json"],
        env={"PLATEAU_URL": api, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    missing = subprocess.run(
        [str(PLATEAU), "--url", api, "metrics", str(uuid.uuid4())], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 3 and "not found" in missing.stderr
