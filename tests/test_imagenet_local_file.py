"""Air-gapped workers: weights "imagenet" loads the operator's local copy (PLATEAU_IMAGENET_WEIGHTS_FILE) instead
of a download, and the autopilot counts the ImageNet weights as loadable once that copy is configured."""

from __future__ import annotations

import numpy as np
import pytest

from contract.spec import JobSpec
from models.settings import Settings, get_settings
from tests.specs import small_spec


def imagenet_job() -> JobSpec:
    return JobSpec.model_validate(small_spec(model={"weights": "imagenet", "dense_units": 8}))


@pytest.fixture
def local_copy(tmp_path, monkeypatch):
    """A base saved as an operator would save their ImageNet copy, and the setting that points at it."""
    import keras

    keras.utils.set_random_seed(7)
    path = tmp_path / "imagenet-notop.weights.h5"
    saved = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    saved.save_weights(path)
    monkeypatch.setenv("PLATEAU_IMAGENET_WEIGHTS_FILE", str(path))
    get_settings.cache_clear()
    yield path, saved.layers[1].get_weights()[0]
    get_settings.cache_clear()


def test_imagenet_weights_come_from_the_local_copy_without_a_download(local_copy, tmp_path):
    from worker.training.model import build_base
    from worker.training.weights_file import weights_file_for

    path, kernel = local_copy
    spec = imagenet_job()
    found = weights_file_for(spec, data_root=tmp_path / "data")
    assert found == path.resolve()
    import keras

    keras.utils.set_random_seed(99)  # a fresh random init would differ from the saved kernel
    base = build_base(spec, found)
    np.testing.assert_array_equal(base.layers[1].get_weights()[0], kernel)


def test_a_missing_local_copy_is_a_data_error_naming_the_setting(tmp_path, monkeypatch):
    from worker.training.errors import DataError
    from worker.training.fit import prepare_data

    monkeypatch.setenv("PLATEAU_IMAGENET_WEIGHTS_FILE", str(tmp_path / "nowhere.weights.h5"))
    get_settings.cache_clear()
    from PIL import Image

    spec = imagenet_job()
    for folder in (spec.dataset.train_dir, spec.dataset.val_dir):
        for cls in ("a", "b"):
            (tmp_path / "data" / folder / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "data" / folder / cls / f"{i}.png")

    class Sink:
        def event(self, *_a, **_k): ...

        def class_counts(self, *_a, **_k): ...

    try:
        with pytest.raises(DataError, match="PLATEAU_IMAGENET_WEIGHTS_FILE"):
            prepare_data(spec, data_root=tmp_path / "data", sink=Sink())
    finally:
        get_settings.cache_clear()


def test_without_a_local_copy_imagenet_is_left_to_keras(tmp_path, monkeypatch):
    from worker.training.weights_file import weights_file_for

    monkeypatch.delenv("PLATEAU_IMAGENET_WEIGHTS_FILE", raising=False)
    get_settings.cache_clear()
    try:
        assert weights_file_for(imagenet_job(), data_root=tmp_path) is None
    finally:
        get_settings.cache_clear()


def test_a_local_copy_makes_imagenet_loadable_for_the_autopilot(tmp_path):
    assert not Settings(imagenet_available=False).imagenet_loadable
    assert Settings(imagenet_available=False, imagenet_weights_file=tmp_path / "w.h5").imagenet_loadable
    assert Settings().imagenet_loadable
