"""`plateau submit --autopilot N --watch`, `plateau lineage`, `plateau outcomes` and the SDK's autopilot methods
against a real API process; a stand-in worker records each job's epochs and end as the real one does."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import structlog
import structlog.testing
from sqlalchemy import update
from sqlmodel import select
from typer.testing import CliRunner

from client.cli import app
from client.sdk import PlateauClient, PlateauError
from models.autopilot.hooks import after_job_end
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.tables import Job, utcnow
from tests.procs import start_api
from tests.specs import small_spec

FLAT = [0.1667] * 7
SETTLED = [0.3, 0.6, 0.8, 0.945, 0.95, 0.95, 0.945]  # learned, then levelled off


@pytest.fixture(scope="module")
def api(tmp_path_factory, data_root):
    (data_root / "base.weights.h5").write_bytes(b"weights")  # only has to exist: nothing trains
    proc, url = start_api({}, tmp_path_factory.mktemp("autopilot-client") / "api.log")
    yield url
    proc.stop()


def planted(name: str) -> dict:
    spec = small_spec(epochs=7, name=name, optimizer={"learning_rate": 1e-6})
    spec["model"] = {**spec["model"], "weights": "base.weights.h5"}
    return spec


def stand_in_worker(name: str, jobs: int, delay: float = 0.05) -> threading.Thread:
    """Trains the jobs named `name` as they are queued: the planted rate stays flat, a raised one learns."""

    def run():
        done: set[uuid.UUID] = set()
        deadline = time.monotonic() + 60
        while len(done) < jobs and time.monotonic() < deadline:
            with session_scope() as s:
                queued = s.exec(select(Job).where(Job.name == name, Job.status == "queued")).all()
            for job in queued:
                if job.id in done:
                    continue
                low = job.spec["optimizer"]["learning_rate"] < 1e-5
                with session_scope() as s:
                    s.execute(update(Job).where(Job.id == job.id).values(status="running", started_at=utcnow()))
                    s.commit()
                    for i, va in enumerate(FLAT if low else SETTLED, start=1):
                        time.sleep(delay)
                        upsert_epoch(
                            s,
                            job.id,
                            {
                                "epoch": i,
                                "val_accuracy": va,
                                "accuracy": va,
                                "loss": 1 - va / 2,
                                "val_loss": 1 - va / 2,
                                "learning_rate": 1e-6 if low else 1e-5,
                                "update_ratio_head": 1.2e-7 if low else 2e-3,
                                "epoch_seconds": 0.1,
                            },
                        )
                    s.execute(update(Job).where(Job.id == job.id).values(status="succeeded", finished_at=utcnow()))
                    s.commit()
                with structlog.testing.capture_logs():  # CliRunner swaps (and closes) the streams logs go to
                    after_job_end(job.id)
                done.add(job.id)
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_cli_submit_autopilot_watch_follows_the_lineage(api, tmp_path):
    name = f"ap-cli-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "job.json"
    path.write_text(json.dumps(planted(name)))
    worker = stand_in_worker(name, jobs=2)
    result = CliRunner().invoke(
        app, ["--url", api, "submit", str(path), "--autopilot", "2", "--watch"], env={"COLUMNS": "160"}
    )
    worker.join(5)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "under autopilot" in out and "── root" in out
    assert "── round 1: learning_rate_too_low → increase_learning_rate" in out
    assert out.count("0.1667") >= 7 and "0.9500" in out  # one line per epoch of both jobs
    assert "ended: healthy after 1 of 2 rounds" in out
    table = out[out.index("lineage of") :]
    assert "increase_learning_rate" in table and "+0.7833" in table and "0.9500" in table  # round, remedy, best, gain

    root_id = out.split("submitted job ", 1)[1].split()[0]
    shown = CliRunner().invoke(app, ["--url", api, "lineage", root_id], env={"COLUMNS": "160"})
    assert shown.exit_code == 0 and "learning_rate_too_low" in shown.output and "+0.7833" in shown.output
    listed = CliRunner().invoke(app, ["--url", api, "outcomes", "--json"])
    items = json.loads(listed.output)["items"]
    assert any(i["remedy"] == "increase_learning_rate" and i["measured"] >= 1 for i in items)


def test_sdk_autopilot_methods(api):
    name = f"ap-sdk-{uuid.uuid4().hex[:8]}"
    with PlateauClient(api, timeout=10) as sdk:
        with pytest.raises(PlateauError) as bad:
            sdk.submit(planted(name), autopilot={"max_rounds": 99})
        assert bad.value.status_code == 422 and bad.value.field_errors[0]["loc"][-1] == "max_rounds"
        job = sdk.submit(planted(name))
        ap = sdk.start_autopilot(job.id, max_rounds=1, min_confidence=0.5)
        assert ap.root_job_id == job.id and ap.config.max_rounds == 1 and ap.state == "active"
        with pytest.raises(PlateauError) as twice:
            sdk.start_autopilot(job.id)
        assert twice.value.status_code == 409
        stand_in_worker(name, jobs=2).join(30)
        lineage = sdk.lineage(job.id)
        # the last round allowed is judged on its own child: fixed there, the lineage ends healthy, not max_rounds
        assert lineage.autopilot.end_reason == "healthy" and [s.round for s in lineage.steps] == [0, 1]
        assert lineage.best_job_id == lineage.steps[1].job_id
        assert lineage.steps[1].gain == pytest.approx(0.95 - 0.1667, abs=1e-6)
        stats = sdk.remedy_outcomes("val_accuracy")
        assert stats.ranking["k"] == 5 and any(i.remedy == "increase_learning_rate" for i in stats.items)
