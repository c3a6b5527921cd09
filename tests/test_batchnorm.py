"""model.batchnorm on real training: frozen BatchNorm keeps the starting statistics and runs in inference mode
while the convolutions train; "train" moves them. In process, on cached head features, mirrored over two
logical CPUs, and through a real job on the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from contract.spec import JobSpec
from samples.shapes import generate
from tests.conftest import new_database_url
from tests.flows import run_small_job_to_success
from tests.procs import start_api, start_worker
from worker.training.sink import MemorySink

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "bn/base.weights.h5"


def bn_stats(base) -> list[np.ndarray]:
    """moving_mean and moving_variance of every BatchNormalization layer, in layer order."""
    import keras

    return [
        keras.ops.convert_to_numpy(v)
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    ]


def first_kernel(base) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(
        next(layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)).kernel
    )


@pytest.fixture(scope="module")
def pretrained(data_root) -> dict:
    """A memorisable set (3 classes, 4 images each) and a base "pre-trained" the cheap way: random weights whose
    BatchNorm statistics are measured once on the training images. Frozen at their initial 0 and 1 the
    statistics would leave a random 94-layer base unnormalised, and it would not train."""
    import keras

    from worker.training.pipeline import make_dataset
    from worker.training.scan import scan

    generate(data_root / "bn", classes=3, train=4, val=2, size=80, seed=5)
    keras.utils.set_random_seed(5)
    base = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3))
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # one training-mode pass sets the moving statistics to this batch's
    images = scan(data_root / "bn" / "train", field_name="train_dir")
    [(x, _)] = make_dataset(images, image_size=75, batch_size=len(images), training=False, seed=None)
    base(x, training=True)
    for layer in norms:
        layer.momentum = 0.99
    base.save_weights(data_root / WEIGHTS)
    return {"stats": bn_stats(base), "kernel": first_kernel(base)}


def spec(epochs: int, trainable="all", batchnorm: str = "auto", **overrides) -> dict:
    return {
        "name": "batchnorm",
        "dataset": {"train_dir": "bn/train", "val_dir": "bn/val", "image_size": 75},
        "model": {"weights": WEIGHTS, "trainable": trainable, "dense_units": 32, "batchnorm": batchnorm},
        "optimizer": {"learning_rate": 2e-5},
        "batch_size": 4,
        "epochs": epochs,
        "seed": 3,
        **overrides,
    }


def saved_base(model_path: str):
    import keras

    return keras.saving.load_model(model_path).get_layer("inception_v3")


def assert_statistics_kept(base, start: dict) -> None:
    for now, then in zip(bn_stats(base), start["stats"], strict=True):
        np.testing.assert_array_equal(now, then)


# --- resolution -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "setting", "mode"),
    [
        ("imagenet", "auto", "frozen"),
        ("base.weights.h5", "auto", "frozen"),
        (None, "auto", "train"),
        ("imagenet", "train", "train"),
        (None, "frozen", "frozen"),
    ],
)
def test_batchnorm_mode_resolves_alike_in_trainer_and_analysis(weights, setting, mode):
    from contract.resolved import ResolvedSpec
    from worker.training.model import batchnorm_mode

    job = JobSpec.model_validate(spec(1, batchnorm=setting) | {"model": {"weights": weights, "batchnorm": setting}})
    assert batchnorm_mode(job) == mode
    assert ResolvedSpec(job.model_dump(mode="json")).batchnorm == mode
    if setting == "auto":  # a stored spec without the key reads as "auto"
        assert ResolvedSpec({"model": {"weights": weights}}).batchnorm == mode


# --- in subprocesses: trained BatchNorm, and MirroredStrategy over two logical CPUs ---------------------------------------

TRAIN = textwrap.dedent("""
    import json, os, sys, threading
    from pathlib import Path
    import tensorflow as tf

    if sys.argv[4] == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        os.environ["PLATEAU_DISTRIBUTE_DEVICES"] = "/cpu:0,/cpu:1"

    from contract.spec import JobSpec
    from worker.training.fit import train
    from worker.training.sink import MemorySink

    sink = MemorySink()
    result = train(JobSpec.model_validate(json.loads(sys.argv[1])), data_root=Path(sys.argv[2]),
                   workdir=Path(sys.argv[3]), sink=sink, stop=threading.Event())
    perf = [d for k, _, d in sink.events if k == "performance"][0]
    print("RESULT " + json.dumps({"status": result.status, "model_path": result.model_path,
                                  "replicas": perf["replicas"], "batchnorm": perf["batchnorm"], "rows": sink.rows}))
""")


@pytest.fixture(scope="module")
def side_runs(pretrained, data_root, tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path]]:
    """Two one-epoch jobs, each in its own process, started together: tracing Inception-V3's train step is
    single-threaded Python, so they share the cores with the other tests instead of waiting for them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    jobs = {"train": (spec(1, batchnorm="train"), "single"), "mirrored": (spec(1, batch_size=2), "mirrored")}
    runs = {}
    for name, (s, how) in jobs.items():
        workdir = tmp_path_factory.mktemp(name)
        with open(workdir / "out.log", "w") as log:  # a file, not a pipe nobody reads until the end
            runs[name] = (
                subprocess.Popen(
                    [sys.executable, "-c", TRAIN, json.dumps(s), str(data_root), str(workdir), how],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=ROOT,
                    env=env,
                ),
                workdir / "out.log",
            )
    yield runs
    for proc, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def side_result(side_runs: dict, name: str) -> dict:
    proc, log = side_runs[name]
    proc.wait(timeout=600)
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert result["status"] == "succeeded" and np.isfinite(result["rows"][0]["loss"])
    return result


# --- in process: head only, on cached features -----------------------------------------------------------------------


@pytest.mark.usefixtures("side_runs")  # started first, to train meanwhile
def test_frozen_base_on_cached_features_keeps_statistics(pretrained, data_root, tmp_path):
    from worker.training.fit import train

    sink = MemorySink()
    result = train(
        JobSpec.model_validate(spec(2, trainable="head")),
        data_root=data_root,
        workdir=tmp_path,
        sink=sink,
        stop=threading.Event(),
    )
    assert result.status == "succeeded"
    [perf] = [d for kind, _, d in sink.events if kind == "performance"]
    assert perf["cache_features"] is True and perf["batchnorm"] == "frozen"
    base = saved_base(result.model_path)
    assert_statistics_kept(base, pretrained)
    np.testing.assert_array_equal(first_kernel(base), pretrained["kernel"])


# --- a real job on the service ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    logs = tmp_path_factory.mktemp("bn-logs")
    env = {"PLATEAU_QUEUE": os.environ["PLATEAU_TEST_WORKER_QUEUE"], "PLATEAU_DATABASE_URL": new_database_url()}
    api_proc, url = start_api(env, logs / "api.log")
    worker = start_worker(env, logs / "worker.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, worker
    finally:
        worker.stop()
        api_proc.stop()


@pytest.mark.usefixtures("side_runs")
def test_fine_tuning_job_keeps_pretrained_statistics_and_inference_tracks_training(api, pretrained):
    """Every layer trainable from a weights file, "auto" BatchNorm: the saved model's statistics are the file's,
    and the inference-mode pass on the training images agrees with Keras' training accuracy once it memorises."""
    client, worker = api
    job = client.post("/jobs", json=spec(6))
    assert job.status_code == 202, job.text
    done = run_small_job_to_success(client, spec(6), worker.tail, job=job.json())
    [perf] = [e["data"] for e in done["events"] if e["kind"] == "performance"]
    assert perf["batchnorm"] == "frozen"  # "auto" from a weights file
    base = saved_base(done["model_path"])
    assert_statistics_kept(base, pretrained)
    assert not np.array_equal(first_kernel(base), pretrained["kernel"])
    rows = client.get(f"/jobs/{done['id']}/metrics").json()["items"]
    last = rows[-1]
    # memorised: 10 of the 12 images or more (which of the last two a CPU's floating-point path gets is chance)
    assert max(r["accuracy"] for r in rows[-3:]) >= 0.8, rows
    assert last["train_eval_accuracy"] >= 0.8 and abs(last["train_eval_accuracy"] - last["accuracy"]) <= 0.25, last


def test_trained_batchnorm_moves_its_statistics(side_runs, pretrained):
    result = side_result(side_runs, "train")
    assert result["batchnorm"] == "train"
    base = saved_base(result["model_path"])
    changed = [not np.array_equal(a, b) for a, b in zip(bn_stats(base), pretrained["stats"], strict=True)]
    assert all(changed), f"{changed.count(False)} of {len(changed)} statistics did not move"
    assert not np.array_equal(first_kernel(base), pretrained["kernel"])


def test_mirrored_training_keeps_frozen_statistics(side_runs, pretrained):
    result = side_result(side_runs, "mirrored")
    assert result["replicas"] == 2 and result["batchnorm"] == "frozen"  # "auto" from a weights file
    base = saved_base(result["model_path"])
    assert_statistics_kept(base, pretrained)
    assert not np.array_equal(first_kernel(base), pretrained["kernel"])  # the convolutions trained
