"""A head-only job's training keeps its training images' pooled features; its probes read them instead of building
Inception-V3, give what the computed features give, and compute them again when the images or the base changed."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from contract.spec import JobSpec
from models.checkpoints import TRAIN_FEATURES
from tests.specs import small_spec


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny head-only job, trained for real (frozen random-init base, features cached)."""
    from samples.shapes import generate
    from worker.training.fit import train
    from worker.training.sink import MemorySink

    root = tmp_path_factory.mktemp("probe-features")
    generate(root / "data" / "shapes", classes=3, train=8, val=4, size=80, seed=5)
    spec = JobSpec.model_validate(small_spec(epochs=2))
    workdir = root / "jobs" / str(uuid.uuid4())
    result = train(spec, data_root=root / "data", workdir=workdir, sink=MemorySink(), stop=threading.Event())
    assert result.status == "succeeded"
    return {"spec": spec, "data_root": root / "data", "workdir": workdir, "model_path": result.model_path}


class Builds:
    """Counts whole models built (the probes' own copies) and Inception-V3 bases built by anyone."""

    def __init__(self, monkeypatch):
        from worker.probes import context
        from worker.training import model

        self.models = self.bases = 0
        build, build_base = context.build, model.build_base

        def counted_build(*a, **kw):
            self.models += 1
            return build(*a, **kw)

        def counted_base(*a, **kw):
            self.bases += 1
            return build_base(*a, **kw)

        monkeypatch.setattr(context, "build", counted_build)
        monkeypatch.setattr(model, "build_base", counted_base)


def target(job, *, stored: bool, weights=None, spec=None):
    from worker.probes import context
    from worker.probes.run import Target

    spec = spec or job["spec"]
    data = context.load_data(spec, data_root=job["data_root"], verify=False)
    weights = weights or context.latest_weights(model_path=job["model_path"], workdir=job["workdir"])
    workdir = job["workdir"] if stored else None
    return Target(uuid.UUID(int=7), spec, data, weights, job["data_root"], workdir)


def run_all(t) -> dict:
    from worker.probes.budget import Budget
    from worker.probes.run import PROBES

    # memorization first: on the computed path it builds the model, and the range test then draws its fresh head
    # right after the seed as the stored path does
    order = ("memorization", "lr_range", "linear_probe", "label_check")
    return {name: PROBES[name](t, Budget(120), {}) for name in order}


def test_training_stores_the_features_of_its_training_images_and_the_listing_leaves_them_out(job):
    from api.artifacts.service import CHECKPOINTS, TENSORBOARD, files_under
    from worker.probes import context

    path = job["workdir"] / TRAIN_FEATURES
    with np.load(path) as z:
        assert z["features"].dtype == np.uint16 and z["features"].shape == (24, 2048)
        data = context.load_data(job["spec"], data_root=job["data_root"], verify=False)
        assert z["paths"].tolist() == data.train_set.paths and z["labels"].tolist() == data.train_set.labels
    assert path.stat().st_size < 24 * 2048 * 2 + 2 * 2048 * 4 + 16_384  # 16 bits a value, a range per feature
    listed = {f.path for sub in (CHECKPOINTS, TENSORBOARD) for f in files_under(job["workdir"], sub)}
    assert listed and TRAIN_FEATURES not in {Path(p).name for p in listed}


def test_probes_read_the_stored_features_without_building_the_model_and_agree_with_computed_ones(job, monkeypatch):
    from worker.probes import context, linear, run

    context._features_cache.clear()
    builds = Builds(monkeypatch)
    fits = []
    out_of_fold = linear.out_of_fold
    monkeypatch.setattr(linear, "out_of_fold", lambda *a, **kw: fits.append(1) or out_of_fold(*a, **kw))
    stored = run_all(target(job, stored=True))
    stored_fit = list(run._probabilities_cache.values())
    assert (builds.models, builds.bases) == (0, 0)
    assert len(fits) == 1  # the label check reads the linear probe's out-of-fold probabilities
    computed = run_all(target(job, stored=False))
    computed_fit = list(run._probabilities_cache.values())
    assert builds.models == 1 and builds.bases == 1  # the old path, once: the later probes share its features
    assert len(fits) == 2  # other features (by at most a 16-bit step): fitted again
    context._features_cache.clear()

    # 16 bits a value move the out-of-fold probabilities by a few thousandths (0.002 here): only an image whose two
    # likeliest classes are that close may go the other way
    (s_fit,), (c_fit,) = stored_fit, computed_fit
    np.testing.assert_allclose(s_fit.probs, c_fit.probs, atol=0.005)
    top2 = np.sort(c_fit.probs, axis=1)[:, -2:]
    near_tie = top2[:, 1] - top2[:, 0] < 0.005
    flipped = s_fit.probs.argmax(1) != c_fit.probs.argmax(1)
    assert not np.any(flipped & ~near_tie)
    s, c = stored["linear_probe"], computed["linear_probe"]
    assert abs(s["accuracy"] - c["accuracy"]) * s["images"] <= flipped.sum() and s["C"] == pytest.approx(c["C"])
    s, c = stored["label_check"], computed["label_check"]
    assert s["p_value"] == pytest.approx(c["p_value"], abs=0.01) and (s["noise_rate"] is None) == (
        c["noise_rate"] is None
    )
    files = target(job, stored=True).data.files
    differ = {i["file"] for i in s["issues"]} ^ {i["file"] for i in c["issues"]}
    assert differ <= {files[i] for i in np.flatnonzero(near_tie)}
    mem_s, mem_c = stored["memorization"], computed["memorization"]
    assert mem_s["accuracy"] == mem_c["accuracy"] and mem_s["loss"] == pytest.approx(mem_c["loss"], rel=0.02, abs=1e-3)
    lr_s, lr_c = stored["lr_range"], computed["lr_range"]
    assert lr_s["rates"] == lr_c["rates"] and lr_s["job_rate_verdict"] == lr_c["job_rate_verdict"]
    np.testing.assert_allclose(lr_s["losses"], lr_c["losses"], rtol=0.02)


def test_the_head_is_read_from_a_head_checkpoint_and_the_initial_head_needs_no_base(job, monkeypatch, tmp_path):
    from worker.probes import context
    from worker.probes.budget import Budget
    from worker.probes.run import probe_memorization
    from worker.training.features import split_model

    spec, final = job["spec"], context.Weights("final model", Path(job["model_path"]))
    model = context.build(spec, 3, final, data_root=job["data_root"])
    expected = context.head_weights(model)
    # what ResumableBackup writes while a head-only job trains: the head model's own weights file
    checkpoint = tmp_path / "latest.weights.h5"
    split_model(model)[1].save_weights(str(checkpoint))
    for weights in (final, context.Weights("checkpoint", checkpoint, head_only=True)):
        read = context.stored_head_weights(weights, spec, 3, 2048)
        assert set(read) == set(expected)
        for name, values in expected.items():
            assert len(read[name]) == len(values) and all(np.array_equal(a, b) for a, b in zip(read[name], values))
    builds = Builds(monkeypatch)
    result = probe_memorization(target(job, stored=True, weights=context.Weights("initial")), Budget(60), {})
    assert result["steps"] == 100 and (builds.models, builds.bases) == (0, 0)


def test_changed_images_or_another_size_fall_back_to_computing_the_features(job, monkeypatch):
    from worker.probes import context

    data_root, workdir = job["data_root"], job["workdir"]
    data = context.load_data(job["spec"], data_root=data_root, verify=False)
    assert context.stored_features(workdir, data, data_root=data_root).features is not None
    bigger = job["spec"].model_copy(deep=True)
    bigger.dataset.image_size = 80
    found = context.stored_features(workdir, context.load_data(bigger, data_root=data_root), data_root=data_root)
    assert found.features is None and "image size" in found.reason
    fewer = job["spec"].model_copy(deep=True)
    fewer.dataset.exclude = [data.files[0]]
    found = context.stored_features(workdir, context.load_data(fewer, data_root=data_root), data_root=data_root)
    assert found.features is None and "other files" in found.reason
    # an image rewritten under the same name after training: its stored features are not of it any more
    image = Path(data.train_set.paths[3])
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        found = context.stored_features(workdir, data, data_root=data_root)
        assert found.features is None and "changed" in found.reason
        context._features_cache.clear()
        builds = Builds(monkeypatch)
        feats = target(job, stored=True).features(threading.Event())
        assert builds.models == 1 and feats.shape == (24, 2048)
    finally:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
        context._features_cache.clear()
