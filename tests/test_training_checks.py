"""Checks inside the training function that need no broker or database."""

from __future__ import annotations

import threading

import pytest

from contract.spec import JobSpec
from samples.shapes import generate
from tests.specs import small_spec
from worker.training.errors import DataError
from worker.training.sink import MemorySink


def test_severe_imbalance_is_recorded_before_training():
    from worker.training.stagnation import check_before_training

    sink = MemorySink()
    counts = {"train": {"a": 300, "b": 20, "c": 25}, "val": {"a": 30, "b": 10, "c": 10}}
    findings = check_before_training(JobSpec.model_validate(small_spec()), counts, sink)
    assert [f.cause for f in findings] == ["class_imbalance"]
    kind, reason, data = sink.events[0]
    assert kind == "finding" and reason.startswith("before training") and data["observed"]["count_ratio"] == 15


def test_balanced_class_weights_silence_the_count_warning():
    from worker.training.stagnation import check_before_training

    sink = MemorySink()
    counts = {"train": {"a": 300, "b": 20, "c": 25}, "val": {"a": 30, "b": 10, "c": 10}}
    spec = JobSpec.model_validate(small_spec(class_weight="balanced"))
    assert check_before_training(spec, counts, sink) == [] and sink.events == []


def test_mild_imbalance_is_not_a_finding():
    from worker.training.stagnation import check_before_training

    sink = MemorySink()
    counts = {"train": {"a": 90, "b": 10}, "val": {"a": 9, "b": 3}}
    assert check_before_training(JobSpec.model_validate(small_spec()), counts, sink) == []
    assert sink.events == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: [p.unlink() for p in (d / "train" / "square").iterdir()], "class folder 'square' has no images"),
        (lambda d: (d / "train" / "circle" / "notes.txt").write_text("hello"), "file circle/notes.txt is not an image"),
        (
            lambda d: (d / "train" / "circle" / "broken.png").write_bytes(b"\x89PNG not really"),
            "file circle/broken.png is not an image",
        ),
    ],
)
def test_bad_data_fails_with_a_reason_naming_it(tmp_path, mutate, message):
    from worker.training.fit import train

    generate(tmp_path / "set", classes=2, train=3, val=2, size=80)
    mutate(tmp_path / "set")
    spec = JobSpec.model_validate(
        small_spec(dataset={"train_dir": "set/train", "val_dir": "set/val", "image_size": 75})
    )
    with pytest.raises(DataError, match=message.replace(".", r"\.")):
        train(spec, data_root=tmp_path, workdir=tmp_path / "w", sink=MemorySink(), stop=threading.Event())


def test_single_class_and_no_subfolders(tmp_path):
    from worker.training.scan import scan

    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class subfolders"):
        scan(tmp_path / "flat", field_name="train_dir")
    generate(tmp_path / "one", classes=2, train=2, val=1, size=80)
    import shutil

    shutil.rmtree(tmp_path / "one" / "train" / "square")
    with pytest.raises(DataError, match="single class"):
        scan(tmp_path / "one" / "train", field_name="train_dir")


def test_validation_split_is_stratified_and_seeded(tmp_path):
    from worker.training.scan import scan, split

    generate(tmp_path / "s", classes=3, train=10, val=1, size=80)
    images = scan(tmp_path / "s" / "train", field_name="train_dir")
    train_a, val_a = split(images, 0.2, seed=3)
    train_b, val_b = split(images, 0.2, seed=3)
    assert val_a.paths == val_b.paths
    assert val_a.counts() == {"circle": 2, "square": 2, "triangle": 2}
    assert not set(train_a.paths) & set(val_a.paths) and len(train_a) + len(val_a) == 30


def test_model_freezing_options():
    from worker.training.model import build_model

    def trainable_base_layers(trainable):
        spec = JobSpec.model_validate(small_spec(model={"weights": None, "trainable": trainable, "dense_units": 8}))
        model = build_model(spec, 3)
        base = model.get_layer("inception_v3")
        return sum(1 for layer in base.layers if layer.trainable and layer.weights) if base.trainable else 0

    assert trainable_base_layers("head") == 0
    top = trainable_base_layers(10)
    from_block = trainable_base_layers("mixed9")
    everything = trainable_base_layers("all")
    assert 0 < top < from_block < everything


def test_local_weights_file_is_loaded(tmp_path):
    import keras
    import numpy as np

    from worker.training.model import build_model

    source = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    source.save_weights(tmp_path / "base.weights.h5")
    spec = JobSpec.model_validate(small_spec(model={"weights": "base.weights.h5", "dense_units": 8}))
    model = build_model(spec, 3, tmp_path / "base.weights.h5")
    loaded = model.get_layer("inception_v3").layers[1].get_weights()[0]  # the first convolution
    assert np.allclose(loaded, source.layers[1].get_weights()[0])
