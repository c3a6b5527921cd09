"""Worker paths exercised by real jobs on the embedded default (SQLite, filesystem broker, a real Celery worker):
ReduceLROnPlateau and EarlyStopping acting, l2, label smoothing, weight decay, each optimizer, augmentation
inside fit, jit_compile, TensorBoard event files, and webhooks sent by the worker itself.

Three tiny jobs share one service; each test checks one path on the job that carries it.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from models import webhooks as hooks
from tests.flows import TERMINAL, assert_epoch_rows
from tests.procs import embedded_env, start_embedded, wait_for
from tests.specs import small_spec

pytestmark = pytest.mark.slow

SECRET = "worker-paths-secret"
# min_delta far above any change of val_loss: only the first epoch counts as an improvement, so the callbacks act
# on the epochs that follow whatever the model learns.
NEVER_IMPROVES = 10.0


class Receiver:
    """A webhook receiver on loopback that keeps every POST: its headers and raw body."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, job_id: str) -> list[tuple[dict, bytes, dict]]:
        out = []
        for headers, raw in list(self.received):
            body = json.loads(raw)
            if body["job_id"] == job_id:
                out.append((headers, raw, body))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def specs(webhook_url: str) -> dict[str, dict]:
    callbacks = small_spec(
        epochs=6,
        name="callbacks",
        optimizer={"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
        regularization={"label_smoothing": 0.1},
        callbacks={
            # reduces after epoch 2 (patience 1), so epoch 3 trains at half the rate
            "reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 1, "min_delta": NEVER_IMPROVES},
            # stops after epoch 3 (patience 2), well before the 6 asked for
            "early_stopping": {"monitor": "val_loss", "patience": 2, "min_delta": NEVER_IMPROVES},
        },
        webhook={"url": webhook_url},
    )
    l2 = small_spec(
        epochs=2,
        name="l2",
        optimizer={"name": "adamw", "learning_rate": 1e-3, "weight_decay": 0.01},
        regularization={"l2": 0.1},
        performance={"jit_compile": True},
    )
    augmented = small_spec(
        epochs=2,
        name="augmented",
        optimizer={"name": "rmsprop", "learning_rate": 1e-3, "momentum": 0.5, "weight_decay": 0.001},
        regularization={"augmentation": {"rotation_range": 10, "zoom_range": 0.1, "horizontal_flip": True}},
    )
    return {"callbacks": callbacks, "l2": l2, "augmented": augmented}


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, receiver):
    """The embedded launcher (API and its worker), allowed to send webhooks to loopback and signing them."""
    tmp = tmp_path_factory.mktemp("worker-paths")
    home = tmp / "home"
    env = embedded_env(
        home, PLATEAU_WEBHOOK_ALLOW_PRIVATE="true", PLATEAU_WEBHOOK_SECRET=SECRET, PLATEAU_WEBHOOK_BACKOFF_SECONDS="0.2"
    )
    proc, url = start_embedded(env, tmp / "embedded.log", timeout=90)
    try:
        with httpx.Client(base_url=url, timeout=60) as api:
            yield api, proc
    finally:
        proc.stop(timeout=60)


@pytest.fixture(scope="module")
def jobs(service, receiver) -> dict[str, dict]:
    """Submits every job at once (the solo worker runs them one after another) and waits until all have ended."""
    api, proc = service
    ids = {}
    for key, spec in specs(receiver.url).items():
        r = api.post("/jobs", json=spec)
        assert r.status_code == 202, r.text
        ids[key] = r.json()["id"]

    def ended():
        return all(api.get(f"/jobs/{jid}").json()["status"] in TERMINAL for jid in ids.values())

    wait_for(
        ended,
        600,
        lambda: f"{[api.get(f'/jobs/{j}').json()['status'] for j in ids.values()]}\n{proc.tail()}",
        interval=2,
    )
    done = {key: api.get(f"/jobs/{jid}").json() for key, jid in ids.items()}
    failed = {key: (job["status"], job["error"]) for key, job in done.items() if job["status"] != "succeeded"}
    assert not failed, f"{failed}\n{proc.tail()}"
    return done


def rows(api: httpx.Client, job: dict) -> list[dict]:
    return api.get(f"/jobs/{job['id']}/metrics").json()["items"]


def events(job: dict, kind: str) -> list[dict]:
    return [e for e in job["events"] if e["kind"] == kind]


def saved_config(api: httpx.Client, job: dict) -> dict:
    """config.json of the downloaded .keras file: the layers and the compile arguments, without loading TensorFlow."""
    r = api.get(f"/jobs/{job['id']}/model")
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        return json.loads(z.read("config.json"))


def optimizer_config(config: dict) -> tuple[str, dict]:
    opt = config["compile_config"]["optimizer"]
    return opt["class_name"], opt["config"]


def layer(config: dict, name: str) -> dict:
    return next(lay for lay in config["config"]["layers"] if lay["name"] == name)


# --- callbacks -------------------------------------------------------------------------------------


def test_reduce_lr_on_plateau_cuts_the_rate_and_records_it(service, jobs):
    api, _ = service
    job = jobs["callbacks"]
    lrs = [r["learning_rate"] for r in rows(api, job)]
    assert lrs[:2] == pytest.approx([0.01, 0.01])
    assert lrs[2] == pytest.approx(0.005)  # ReduceLROnPlateau halved it after epoch 2
    reduced = events(job, "lr_reduced")
    assert reduced, job["events"]
    assert reduced[0]["data"]["epoch"] == 3
    assert reduced[0]["data"]["from"] == pytest.approx(0.01) and reduced[0]["data"]["to"] == pytest.approx(0.005)


def test_early_stopping_ends_the_job_with_its_reason(service, jobs):
    api, _ = service
    job = jobs["callbacks"]
    assert job["status"] == "succeeded"
    assert_epoch_rows(rows(api, job), 3)  # 3 of the 6 epochs asked for
    assert job["stop_reason"].startswith("early_stopping: val_loss"), job["stop_reason"]
    assert "stopped after epoch 3" in job["stop_reason"]
    stopped = events(job, "early_stopped")
    assert len(stopped) == 1 and stopped[0]["data"] == {"epoch": 3, "monitor": "val_loss"}


# --- regularization and optimizers ---------------------------------------------------------------


def test_sgd_with_momentum_and_label_smoothing_are_saved(service, jobs):
    api, _ = service
    config = saved_config(api, jobs["callbacks"])
    name, opt = optimizer_config(config)
    assert name == "SGD" and opt["momentum"] == pytest.approx(0.9)
    loss = config["compile_config"]["loss"]
    assert loss["config"]["label_smoothing"] == pytest.approx(0.1)


def test_l2_penalty_is_in_the_loss_and_the_model(service, jobs):
    api, _ = service
    for name in ("dense", "predictions"):
        reg = layer(saved_config(api, jobs["l2"]), name)["config"]["kernel_regularizer"]
        assert reg["class_name"] == "L2" and reg["config"]["l2"] == pytest.approx(0.1)
    # The same seed and data without l2 start near ln(3) ≈ 1.1; 0.1 × the head's squared weights adds several units.
    with_l2 = rows(api, jobs["l2"])[0]["loss"]
    without = rows(api, jobs["callbacks"])[0]["loss"]
    assert with_l2 > without + 1, (with_l2, without)


def test_adamw_with_weight_decay_is_saved(service, jobs):
    api, _ = service
    name, opt = optimizer_config(saved_config(api, jobs["l2"]))
    assert name == "AdamW" and opt["weight_decay"] == pytest.approx(0.01)


def test_rmsprop_with_momentum_and_weight_decay_is_saved(service, jobs):
    api, _ = service
    name, opt = optimizer_config(saved_config(api, jobs["augmented"]))
    assert name == "RMSprop"
    assert opt["momentum"] == pytest.approx(0.5) and opt["weight_decay"] == pytest.approx(0.001)


# --- performance paths -----------------------------------------------------------------------------


def test_augmentation_trains_inside_fit_without_feature_caching(service, jobs):
    api, _ = service
    job = jobs["augmented"]
    assert_epoch_rows(rows(api, job), 2)
    perf = events(job, "performance")
    assert len(perf) == 1
    assert perf[0]["data"]["cache_features"] is False
    assert "augmentation" in perf[0]["data"]["cache_skipped_because"]
    assert "feature caching off" in perf[0]["reason"]


def test_jit_compile_job_trains_and_says_so(service, jobs):
    api, _ = service
    job = jobs["l2"]
    assert_epoch_rows(rows(api, job), 2)
    perf = events(job, "performance")
    assert len(perf) == 1 and perf[0]["data"]["jit_compile"] is True
    assert "jit_compile on" in perf[0]["reason"]


# --- TensorBoard -----------------------------------------------------------------------------------


def test_tensorboard_event_files_hold_epoch_loss(service, jobs, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    api, _ = service
    job = jobs["callbacks"]
    listing = api.get(f"/jobs/{job['id']}/artifacts").json()
    files = listing["tensorboard"]["files"]
    for split in ("train", "validation"):
        mine = [f for f in files if f["path"].startswith(f"tensorboard/{split}/") and ".tfevents." in f["path"]]
        assert mine, files
        folder = tmp_path / split
        folder.mkdir()
        for f in mine:
            r = api.get(f["url"])
            assert r.status_code == 200 and len(r.content) == f["size"]
            (folder / Path(f["path"]).name).write_bytes(r.content)
        acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
        acc.Reload()
        assert "epoch_loss" in acc.Tags()["tensors"], (split, acc.Tags())
        assert [e.step for e in acc.Tensors("epoch_loss")] == [0, 1, 2]  # one point per epoch trained


# --- webhooks sent by the worker -----------------------------------------------------------------


def test_worker_sends_signed_running_and_succeeded(jobs, receiver):
    job = jobs["callbacks"]
    wait_for(
        lambda: any(b["event"] == "succeeded" for _, _, b in receiver.events(job["id"])),
        30,
        lambda: f"no succeeded delivery: {receiver.events(job['id'])}",
    )
    got = receiver.events(job["id"])
    for headers, raw, body in got:
        assert hooks.verify(SECRET, raw, headers.get(hooks.SIGNATURE_HEADER)), headers
        assert headers[hooks.EVENT_HEADER] == body["event"]
    order = [b["event"] for _, _, b in got]
    assert "running" in order and order.index("running") < order.index("succeeded"), order
    running = next(b for _, _, b in got if b["event"] == "running")
    assert running["status"] == "running" and running["data"]["attempt"] == 1
    succeeded = next(b for _, _, b in got if b["event"] == "succeeded")
    assert succeeded["status"] == "succeeded"
    assert succeeded["data"]["stop_reason"] == job["stop_reason"]
    # jobs without a webhook send nothing
    assert not receiver.events(jobs["l2"]["id"]) and not receiver.events(jobs["augmented"]["id"])
