"""What a probe works on: the job's own training images and a fresh copy of its latest weights.

The latest weights are the finished model, else the newest checkpoint, else the job's initial weights (its base
as the spec asks, the head as Keras initialises it under the job's seed). A head-only job's probes read the pooled
features its training stored, and the head's weights straight from its file, when they still fit
(`stored_features`, `stored_head_weights`): nothing builds the base then. Everything is read; nothing of the job
is written, so its training and files stay as they are."""

from __future__ import annotations

import io
import re
import struct
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.spec import JobSpec
from models.checkpoints import TRAIN_FEATURES
from models.paths import resolve_under
from worker.training import stored_features as stored
from worker.training.errors import DataError, ModelError
from worker.training.scan import ImageSet, scan, split
from worker.training.weights_file import missing_reason, weights_file_for

FEATURE_BATCH = 32
# One entry: consecutive probes of a job on one worker share the forward pass and the model build.
_features_cache: dict[tuple, tuple[np.ndarray, dict[str, list[np.ndarray]]]] = {}


@dataclass
class JobData:
    spec: JobSpec
    train_set: ImageSet
    files: list[str]  # each training image's path under train_dir, as dataset.exclude names it

    @property
    def classes(self) -> list[str]:
        return self.train_set.classes

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.train_set.labels, dtype="int64")


def load_data(spec: JobSpec, *, data_root: Path, verify: bool = True) -> JobData:
    """The job's training images exactly as its training sees them: its exclusions, its validation split."""
    ds = spec.dataset
    train_dir = resolve_under(data_root, ds.train_dir)
    # A probe of a job that never started checks the images as training would; later ones trust that check.
    images = scan(train_dir, field_name="train_dir", root=data_root, exclude=ds.exclude, verify=verify)
    if ds.val_dir is None:
        images, _ = split(images, ds.validation_split, ds.seed)
    files = [Path(p).relative_to(train_dir).as_posix() for p in images.paths]
    return JobData(spec, images, files)


@dataclass(frozen=True)
class Weights:
    """Where the probe's copy of the model gets its weights: "final model", "checkpoint" or "initial"."""

    source: str
    path: Path | None = None
    head_only: bool = False  # a head checkpoint (features were cached): the base comes from `base_path`
    base_path: Path | None = None

    def key(self) -> tuple:
        stamp = self.path.stat().st_mtime_ns if self.path is not None and self.path.exists() else None
        return (self.source, str(self.path), stamp)


def latest_weights(*, model_path: str | None, workdir: Path | None) -> Weights:
    if model_path and Path(model_path).is_file():
        return Weights("final model", Path(model_path))
    if workdir is not None:
        backup = workdir / "backup"
        full = backup / "latest.weights.h5"
        if full.is_file():
            return Weights("checkpoint", full)
        head = backup / "head" / "latest.weights.h5"
        if head.is_file():
            base = backup / "frozen_base.weights.h5"
            return Weights("checkpoint", head, head_only=True, base_path=base if base.is_file() else None)
    return Weights("initial")


def build(spec: JobSpec, n_classes: int, weights: Weights, *, data_root: Path):
    """A new model as the spec builds it, with `weights` loaded: the probe's own copy."""
    import keras

    from worker.training.features import split_model
    from worker.training.model import BASE_LAYER, build_model

    if spec.seed is not None or spec.dataset.seed is not None:  # the job's own initial weights
        keras.utils.set_random_seed(spec.seed if spec.seed is not None else spec.dataset.seed)
    weights_file = weights_file_for(spec, data_root=data_root)
    if weights_file is not None and not weights_file.is_file():
        raise DataError(missing_reason(spec, weights_file))
    model = build_model(spec, n_classes, weights_file)
    try:
        if weights.head_only:
            if weights.base_path is not None:
                model.get_layer(BASE_LAYER).load_weights(str(weights.base_path))
            split_model(model)[1].load_weights(str(weights.path))
        elif weights.path is not None and weights.path.suffix == ".keras":
            load_keras_weights(model, weights.path)
        elif weights.path is not None:
            model.load_weights(str(weights.path))
    except Exception as exc:  # noqa: BLE001 - a checkpoint being rewritten, or a model that no longer fits
        raise ModelError(f"could not load the job's {weights.source} ({type(exc).__name__}: {exc})") from exc
    return model


def load_keras_weights(model, path: Path) -> None:
    """The weights of a saved .keras model, read from a private copy of its weights file: Keras reads them
    several times faster from a plain .weights.h5 than from inside the zip archive."""
    with tempfile.TemporaryDirectory(prefix="plateau-probe-") as tmp, zipfile.ZipFile(path) as archive:
        target = Path(tmp) / "model.weights.h5"
        with archive.open("model.weights.h5") as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        model.load_weights(str(target))


def head_weights(model) -> dict[str, list[np.ndarray]]:
    """The head's weights by layer name (`model.HEAD`)."""
    from worker.training.model import HEAD_LAYERS

    return {name: model.get_layer(name).get_weights() for name in HEAD_LAYERS}


def head_model(spec: JobSpec, n_classes: int, width: int, weights: dict[str, list[np.ndarray]]):
    """The job's head on pooled features, as `spec` builds it (its dropout and l2), holding `weights`: a copy
    that costs milliseconds, where a whole Inception-V3 costs seconds."""
    import keras

    from worker.training.model import HEAD

    l2 = keras.regularizers.L2(spec.regularization.l2) if spec.regularization.l2 else None
    inputs = keras.Input((width,), name="features")
    x = inputs
    for layer in HEAD:
        x = layer.make(spec, n_classes, l2)(x)
    model = keras.Model(inputs, x, name="probe_head")
    for name, values in weights.items():
        model.get_layer(name).set_weights(values)
    return model


def features(
    build_model, data: JobData, *, key: tuple, stop: threading.Event | None = None
) -> tuple[np.ndarray, dict[str, list[np.ndarray]]] | None:
    """Pooled features of every training image through the base in inference mode, and the head's weights, of
    the model `build_model()` returns (built only when `key` is not cached); None if stopped."""
    from worker.training.features import extract, split_model
    from worker.training.pipeline import make_dataset

    if key in _features_cache:
        return _features_cache[key]
    model = build_model()
    ds = make_dataset(
        data.train_set,
        image_size=data.spec.dataset.image_size,
        batch_size=FEATURE_BATCH,
        training=False,
        seed=None,
        cache=False,
    )
    out = extract(split_model(model)[0], [ds], stop or threading.Event())
    if out is None:
        return None
    _features_cache.clear()
    _features_cache[key] = (out[0], head_weights(model))
    return _features_cache[key]


def stored_features(workdir: Path, data: JobData, *, data_root: Path) -> stored.Found:
    """The pooled features the job's training stored (a head-only job on cached features), if they are of these
    images through this base (`worker.training.stored_features`)."""
    spec = data.spec
    weights_file = weights_file_for(spec, data_root=data_root)
    if weights_file is not None and not weights_file.is_file():
        return stored.Found(None, "the job's weights file is gone")
    return stored.load(
        workdir / TRAIN_FEATURES,
        paths=data.train_set.paths,
        labels=data.train_set.labels,
        classes=data.classes,
        identity=stored.base_identity(spec, weights_file),
    )


def _snake(name: str) -> str:
    """Keras' own class-name rule (`keras.src.utils.naming.to_snake_case`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _saved_paths(layers) -> list[str]:
    """Where Keras keeps each of a model's layers in a weights file: its class name in snake case, numbered from
    the second of a class on (`layers/dense`, `layers/dense_1`), never its own name."""
    used: dict[str, int] = {}
    out = []
    for layer in layers:
        name = _snake(type(layer).__name__)
        used[name] = used.get(name, -1) + 1
        out.append(f"layers/{name}_{used[name]}" if used[name] else f"layers/{name}")
    return out


class _Slice(io.RawIOBase):
    """A read-only window on a file: a member stored uncompressed in a zip archive, read where it lies (h5py seeks
    back and forth, which a zip member stream pays for by reading from its start again)."""

    def __init__(self, f, start: int, size: int):
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence] + offset
        return self._pos

    def readinto(self, b) -> int:
        n = max(0, min(len(b), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


@contextmanager
def _weights_h5(path: Path):
    """The weights file of a .keras archive, or `path` itself, open with h5py."""
    import h5py

    if path.suffix != ".keras":
        with h5py.File(path, "r") as f:
            yield f
        return
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as src, h5py.File(src, "r") as f:
                yield f
            return
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        header = raw.read(30)  # the local file header: its name and extra field lengths are at 26 and 28
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        window = _Slice(raw, info.header_offset + 30 + name_len + extra_len, info.file_size)
        with h5py.File(window, "r") as f:
            yield f


def stored_head_weights(weights: Weights, spec: JobSpec, n_classes: int, width: int) -> dict[str, list[np.ndarray]]:
    """The head's weights by layer name, read from the job's weights file without building the base: a saved .keras
    model, or a weights file of the whole classifier or of its head alone. Keras keeps each layer's variables
    under its class's name in the model's layer order; before the head the whole classifier has only an input, the
    base and the pooling, none of the head's classes, so the head's layers lie under the same names in both.
    ModelError if what is there does not fit the head."""
    from worker.training.model import HEAD_LAYERS

    shell = head_model(spec, n_classes, width, {})
    try:
        out = {}
        with _weights_h5(weights.path) as f:
            for layer, where in zip(shell.layers, _saved_paths(shell.layers), strict=True):
                if layer.name not in HEAD_LAYERS:
                    continue
                group = f.get(f"{where}/vars")
                values = [np.asarray(group[str(i)]) for i in range(len(group))] if group is not None else []
                if [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
                    raise ValueError(f"{where} does not fit the head's layer {layer.name!r}")
                out[layer.name] = values
        return out
    except Exception as exc:  # noqa: BLE001 - rewritten meanwhile, or laid out otherwise: the caller builds the model
        raise ModelError(
            f"could not read the head from the job's {weights.source} ({type(exc).__name__}: {exc})"
        ) from exc


def images(data: JobData, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images and one-hot labels of `indices`, in memory (a small subset)."""
    from worker.training.pipeline import make_dataset

    subset = ImageSet(
        data.classes, [data.train_set.paths[i] for i in indices], [data.train_set.labels[i] for i in indices]
    )
    xs, ys = [], []
    for x, y in make_dataset(
        subset,
        image_size=data.spec.dataset.image_size,
        batch_size=FEATURE_BATCH,
        training=False,
        seed=None,
        cache=False,
    ):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def image_batches(data: JobData, batch_size: int, seed: int | None) -> Any:
    """Endless shuffled training batches of images, without augmentation (the sweep compares rates, not views)."""
    from worker.training.pipeline import make_dataset

    ds = make_dataset(
        data.train_set, image_size=data.spec.dataset.image_size, batch_size=batch_size, training=True, seed=seed
    )
    return iter(ds.repeat())


def feature_batches(x: np.ndarray, labels: np.ndarray, n_classes: int, batch_size: int, seed: int | None):
    """Endless random batches of (features, one-hot labels)."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(n_classes, dtype="float32")[labels]
    size = min(batch_size, len(x))
    while True:
        idx = rng.choice(len(x), size, replace=False)
        yield x[idx], onehot[idx]
