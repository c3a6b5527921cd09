"""Pre-train an Inception-V3 base on a larger generated source task and save its weights.

The source task (benchmarks/diagnosis/families.py `SOURCE`) mixes shapes and periodic patterns that are
neither target family's classes, so fine-tuning on shapes and on textures are both transfer tasks.

Inception-V3 from random weights sits at chance on a few hundred small images for many epochs,
which would look like a stagnation in every run. Fine-tuning from this file is the path a user
with a local weights file takes.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from benchmarks.diagnosis.families import SOURCE, write_split


def recalibrate_batchnorm(base, ds, passes: int = 3) -> None:
    import keras

    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.5
    for _ in range(passes):
        for x, _y in ds:
            base(x, training=True)
    for layer in norms:
        layer.momentum = 0.99


def pretrain(
    out: Path, data: Path, *, size: int = 75, per_class: int = 48, epochs: int = 8, seed: int = SOURCE.seed
) -> Path:
    import keras
    import tensorflow as tf

    from worker.training.pipeline import make_dataset
    from worker.training.scan import scan

    if out.exists():
        return out
    if not (data / "train").exists():
        write_split(SOURCE, data / "train", {c: per_class for c in SOURCE.classes}, random.Random(seed), size=size)
    images = scan(data / "train", field_name="train_dir")
    ds = make_dataset(images, image_size=size, batch_size=32, training=True, seed=seed)
    keras.utils.set_random_seed(seed)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))  # BatchNorm in training mode while pre-training
    model = keras.Model(inputs, keras.layers.Dense(len(images.classes), activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    history = model.fit(ds, epochs=epochs, verbose=2)
    # BatchNorm moving statistics lag a short training run, and fine-tuning calls the base in inference mode:
    # re-estimate them with forward passes in training mode (weights untouched) before saving.
    _, before = model.evaluate(ds, verbose=0)
    recalibrate_batchnorm(base, ds)
    _, after = model.evaluate(ds, verbose=0)
    print(
        f"pre-trained in {time.perf_counter() - t0:.0f}s: train accuracy {history.history['accuracy'][-1]:.3f}, "
        f"inference-mode accuracy {before:.3f} before BatchNorm re-estimation, {after:.3f} after"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    base.save_weights(out)
    del tf
    return out


if __name__ == "__main__":
    from benchmarks.common import work_dir

    work = work_dir("diagnosis")
    pretrain(work / "data" / "base.weights.h5", work / "source")
