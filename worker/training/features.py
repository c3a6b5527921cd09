"""Head-only training on cached features.

With the base frozen and no augmentation, the base maps every image to the same pooled feature vector in
every epoch. Computing those vectors once and training only the head on them gives the same model as
training the whole network (up to float rounding), at the cost of one forward pass of the base.
"""

from __future__ import annotations

import threading
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.artifacts import written_atomically
from worker.training.model import HEAD_LAYERS, POOL_LAYER

# Features are float32; above this the job trains on images instead (and says so).
MAX_CACHE_BYTES = 1 << 30


def cache_bytes(n_images: int, model: keras.Model) -> int:
    return n_images * int(model.get_layer(POOL_LAYER).output.shape[-1]) * 4


def split_model(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head): image → pooled features of the frozen base in inference mode, and features → class
    probabilities through the model's own head layers (`model.HEAD`, in its order), so training the head trains
    `model`."""
    extractor = keras.Model(model.inputs, model.get_layer(POOL_LAYER).output, name="feature_extractor")
    features = keras.Input(tuple(extractor.output.shape[1:]), name="features")
    x = features
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return extractor, keras.Model(features, x, name="plateau_head")


def extract(
    extractor: keras.Model, datasets: list[tf.data.Dataset], stop: threading.Event, jit_compile: bool = False
) -> list[np.ndarray] | None:
    """Features of every image of each of `datasets` (unshuffled datasets of (image batch, label batch)), in order;
    None if `stop` was set meanwhile.

    One tf.function serves every dataset and batch size: tracing Inception-V3 costs seconds, as much as the
    forward pass of a small data set, so a job traces it once."""
    spec = tf.TensorSpec((None, *extractor.input_shape[1:]), tf.float32)
    run = tf.function(
        lambda x: tf.cast(extractor(x, training=False), tf.float32), input_signature=[spec], jit_compile=jit_compile
    )
    width = int(extractor.output.shape[-1])
    out = []
    for images in datasets:
        batches = []
        for x, _ in images:
            if stop.is_set():
                return None
            batches.append(run(x).numpy())
        out.append(np.concatenate(batches) if batches else np.zeros((0, width), "float32"))
    return out


def feature_dataset(
    features: np.ndarray, labels: list[int], n_classes: int, *, batch_size: int, training: bool, seed: int | None
) -> tf.data.Dataset:
    """Batches of (features, one-hot label); shuffled like `pipeline.make_dataset` (same seed, same order)."""
    onehot = np.eye(n_classes, dtype="float32")[np.asarray(labels, dtype="int64")]
    ds = tf.data.Dataset.from_tensor_slices((features, onehot))
    if training:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def pin_base(base: keras.Model, path: Path) -> str | None:
    """Keeps a randomly initialised base identical across attempts of a job, since the head's checkpoint does
    not hold it: the first attempt saves it, later ones load it. Returns a warning if the saved copy is unusable."""
    if path.is_file():
        try:
            base.load_weights(str(path))
            return None
        except Exception as exc:  # noqa: BLE001 - an unreadable copy is replaced; training goes on
            warning = f"saved base weights unreadable ({exc}); the head trains on a new random base"
    else:
        warning = None
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as tmp:
        base.save_weights(str(tmp))
    return warning
