"""Speed settings: the spec's `performance` section, mixed precision, head-only feature caching, mirrored training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from contract import predictions
from contract.spec import JobSpec
from samples.shapes import generate
from tests.specs import small_spec
from worker.training.sink import MemorySink

ROOT = Path(__file__).resolve().parents[1]
COMPARED = (
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "train_eval_loss",
    "train_eval_accuracy",
    "grad_norm",
    "update_ratio_head",
    "batch_loss_mean",
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("perf-data")
    generate(root / "shapes", classes=3, train=8, val=4, size=80, seed=3)
    return root


def spec_of(epochs: int = 2, performance: dict | None = None, **overrides) -> JobSpec:
    spec = small_spec(epochs=epochs, **overrides)
    spec["model"] = {"weights": None, "trainable": "head", "dense_units": 16}
    spec["performance"] = performance or {}
    return JobSpec.model_validate(spec)


def run(spec: JobSpec, data_root: Path, workdir: Path, stop: threading.Event | None = None, history=None):
    from worker.training.fit import train

    sink = MemorySink()
    result = train(
        spec, data_root=data_root, workdir=workdir, sink=sink, stop=stop or threading.Event(), history=history
    )
    return result, sink


def performance_event(sink: MemorySink) -> dict:
    [data] = [d for kind, _, d in sink.events if kind == "performance"]
    return data


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for x, y in zip(a, b):
        for key in COMPARED:
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-5), (x["epoch"], key)
        assert x["confusion"] == y["confusion"]


# --- the spec ---------------------------------------------------------------------------------------------------


def test_performance_defaults_keep_old_specs_valid():
    spec = JobSpec.model_validate(small_spec())
    assert spec.performance.model_dump() == {"mixed_precision": "auto", "jit_compile": False, "cache_features": "auto"}


@pytest.mark.parametrize(
    ("performance", "field"),
    [
        ({"mixed_precision": "float8"}, "mixed_precision"),
        ({"cache_features": "always"}, "cache_features"),
        ({"jit_compile": "sometimes"}, "jit_compile"),
        ({"xla": True}, "xla"),
    ],
)
def test_bad_performance_fields_are_refused(performance, field):
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({**small_spec(), "performance": performance})
    assert [e["loc"] for e in info.value.errors()] == [("performance", field)]


def test_bad_performance_field_is_422(client):
    r = client.post("/jobs", json={**small_spec(), "performance": {"mixed_precision": "fp8"}})
    assert r.status_code == 422
    assert any(tuple(e["loc"]) == ("body", "performance", "mixed_precision") for e in r.json()["detail"])


# --- resolution ---------------------------------------------------------------------------------------------------


def test_precision_resolution_and_policy_reset():
    import keras

    from worker.training.performance import precision_policy, resolve_precision

    assert resolve_precision("auto", gpus=1) == "mixed_float16"
    assert resolve_precision("auto", gpus=0) == "float32"
    assert resolve_precision("off", gpus=2) == "float32"
    assert resolve_precision("mixed_bfloat16", gpus=0) == "mixed_bfloat16"
    before = keras.mixed_precision.global_policy().name
    with pytest.raises(RuntimeError), precision_policy("mixed_bfloat16"):
        layer = keras.layers.Dense(2)
        raise RuntimeError("a failed build still restores the policy")
    assert layer.dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before


def test_caching_plan():
    from worker.training.performance import plan

    def why(**kw):
        p = plan(spec_of(**kw), gpus=0, replicas=2, has_augmentation=bool(kw.get("regularization")))
        assert p.global_batch_size == 16  # batch_size 8 per replica
        return p.cache_skipped_because if not p.cache_features else None

    assert why() is None
    assert why(performance={"cache_features": "off"}) == "cache_features is off"
    assert why(regularization={"augmentation": {"horizontal_flip": True}}).startswith("augmentation")
    spec = spec_of()
    spec.model.trainable = "mixed9"
    assert not plan(spec, gpus=0, replicas=1, has_augmentation=False).cache_features


def test_default_strategy_without_gpus_or_devices(monkeypatch):
    from worker.training.performance import DISTRIBUTE_DEVICES_ENV, choose_strategy

    monkeypatch.delenv(DISTRIBUTE_DEVICES_ENV, raising=False)
    assert choose_strategy().num_replicas_in_sync == 1


def test_input_pipeline_is_all_tf_data(shapes):
    """Parallel decode, cache, batch-level augmentation and prefetch, with no Python function per element."""
    import tensorflow as tf

    from worker.training.pipeline import augmenter, make_dataset
    from worker.training.scan import scan

    images = scan(shapes / "shapes" / "train", field_name="train_dir")
    aug = augmenter(spec_of(regularization={"augmentation": {"horizontal_flip": True}}).regularization.augmentation, 1)
    ds = make_dataset(images, image_size=75, batch_size=4, training=True, seed=1, augmentation=aug)
    graph = tf.compat.v1.GraphDef.FromString(tf.raw_ops.DatasetToGraphV2(input_dataset=ds._variant_tensor).numpy())
    ops = [n.op for n in graph.node]
    assert ops.count("ParallelMapDatasetV2") == 2  # decode per image, then cast + augment + preprocess per batch
    for op in ("CacheDatasetV2", "ShuffleDatasetV3", "BatchDatasetV2", "PrefetchDataset"):
        assert op in ops, ops
    assert not [op for op in ops if "PyFunc" in op or "Generator" in op]


# --- training -----------------------------------------------------------------------------------------------------


def test_cached_head_trains_the_same_model_as_the_full_network(shapes, tmp_path):
    import keras

    spec = dict(
        regularization={"dropout": 0.25},
        class_weight="balanced",
        callbacks={"early_stopping": {"patience": 5, "restore_best_weights": True}},
    )
    full, full_sink = run(spec_of(performance={"cache_features": "off"}, **spec), shapes, tmp_path / "full")
    cached, cached_sink = run(spec_of(**spec), shapes, tmp_path / "cached")
    assert full.status == cached.status == "succeeded"
    assert performance_event(full_sink)["cache_features"] is False
    assert performance_event(cached_sink)["cache_features"] is True
    assert_same_rows(full_sink.rows, cached_sink.rows)
    assert all(r["update_ratio_base"] is None for r in full_sink.rows + cached_sink.rows)
    # model.keras is the whole classifier, with the trained head, either way
    a, b = keras.saving.load_model(full.model_path), keras.saving.load_model(cached.model_path)
    assert b.input_shape == (None, 75, 75, 3) and b.get_layer("inception_v3") is not None
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "cached" / "backup").exists()
    for sink in (full_sink, cached_sink):  # the best epoch's per-image predictions, for paired comparisons
        best = max(sink.rows, key=lambda r: r["val_accuracy"])  # the first epoch reaching the best
        correct, labels = predictions.correct(sink.best_predictions)
        assert sink.best_predictions["epoch"] == best["epoch"] and len(labels) == 12
        assert sum(correct) / len(correct) == pytest.approx(best["val_accuracy"])


def test_mixed_float16_scales_the_loss_and_resets_the_policy(shapes, tmp_path):
    import keras

    result, sink = run(spec_of(epochs=1, performance={"mixed_precision": "mixed_float16"}), shapes, tmp_path)
    assert result.status == "succeeded" and performance_event(sink)["policy"] == "mixed_float16"
    assert np.isfinite(sink.rows[0]["loss"]) and np.isfinite(sink.rows[0]["val_loss"])
    assert 0 < sink.rows[0]["grad_norm"] < float("inf")  # the probe unscales its scaled gradients
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(result.model_path)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("dense").dtype_policy.name == "mixed_float16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"


def test_mixed_bfloat16_trains_on_this_cpu_with_a_float32_output(shapes, tmp_path):
    import keras

    spec = spec_of(epochs=1, performance={"mixed_precision": "mixed_bfloat16", "cache_features": "off"})
    result, sink = run(spec, shapes, tmp_path)
    assert result.status == "succeeded" and performance_event(sink)["policy"] == "mixed_bfloat16"
    assert np.isfinite(sink.rows[0]["loss"]) and np.isfinite(sink.rows[0]["val_loss"])
    assert 0 < sink.rows[0]["grad_norm"] < float("inf")
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(result.model_path)
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # bf16 needs no loss scaling
    assert model.get_layer("dense").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    assert model(np.zeros((1, 75, 75, 3), "float32")).dtype == "float32"


def test_cancel_during_feature_extraction(shapes, tmp_path):
    stop = threading.Event()
    stop.set()
    result, sink = run(spec_of(), shapes, tmp_path, stop=stop)
    assert result.status == "cancelled" and sink.rows == []


def test_resumed_head_keeps_its_random_base(shapes, tmp_path):
    """A random (unseeded) base is saved by the first attempt, so the head's checkpoint still fits it after a restart."""
    import keras

    from worker.training.model import build_base

    spec = spec_of(epochs=3)
    spec.seed = None
    stop = threading.Event()

    class StopAfterFirstEpoch(MemorySink):
        def epoch(self, row):
            super().epoch(row)
            stop.set()

    from worker.training.fit import train

    first = StopAfterFirstEpoch()
    result = train(spec, data_root=shapes, workdir=tmp_path, sink=first, stop=stop)
    done = len(first.rows)  # the epoch running when the stop came is finished and checkpointed too
    assert result.status == "cancelled" and 1 <= done < 3
    pinned = build_base(spec, None)
    pinned.load_weights(str(tmp_path / "backup" / "frozen_base.weights.h5"))

    result, second = run(spec, shapes, tmp_path, history=first.rows)
    assert result.status == "succeeded" and [r["epoch"] for r in second.rows] == list(range(done + 1, 4))
    base = keras.saving.load_model(result.model_path).get_layer("inception_v3")
    for wa, wb in zip(pinned.get_weights(), base.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


MIRRORED = textwrap.dedent("""
    import json, os, sys, threading
    from pathlib import Path
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    os.environ["PLATEAU_DISTRIBUTE_DEVICES"] = "/cpu:0,/cpu:1"

    from contract.spec import JobSpec
    from worker.training.fit import train
    from worker.training.sink import MemorySink

    out = {}
    for mode in ("auto",):
        spec = JobSpec.model_validate(json.loads(sys.argv[1]) | {"performance": {"cache_features": mode}})
        sink = MemorySink()
        result = train(spec, data_root=Path(sys.argv[2]), workdir=Path(sys.argv[3]) / mode, sink=sink,
                       stop=threading.Event())
        out[mode] = {"status": result.status, "rows": sink.rows,
                     "performance": [d for k, _, d in sink.events if k == "performance"][0]}
    print("RESULT " + json.dumps(out))
""")


def test_mirrored_training_on_two_logical_cpus(shapes, tmp_path):
    spec = spec_of(epochs=2, batch_size=4).model_dump(mode="json")
    del spec["performance"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, json.dumps(spec), str(shapes), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    # the head on cached features, replicated; the whole network replicated is tests/test_batchnorm.py's mirrored
    # run, and cached against uncached is test_cached_head_trains_the_same_model_as_the_full_network
    auto = out["auto"]
    assert auto["status"] == "succeeded"
    perf = auto["performance"]
    assert perf["replicas"] == 2 and perf["global_batch_size"] == 8  # batch_size is per replica
    assert perf["cache_features"] is True, perf
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] is not None for r in auto["rows"])
