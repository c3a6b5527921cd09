"""Inception-V3 with the classification head practitioners use, frozen as the spec asks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from contract.resolved import resolve_batchnorm
from contract.spec import JobSpec
from worker.training.errors import ModelError


def _weights_arg(spec: JobSpec, weights_file: Path | None) -> str | None:
    if weights_file is not None:
        return None  # loaded below, after the base is built (for "imagenet": the operator's local copy)
    return "imagenet" if spec.model.weights == "imagenet" else None


def build_base(spec: JobSpec, weights_file: Path | None) -> keras.Model:
    size = spec.dataset.image_size
    try:
        base = keras.applications.InceptionV3(
            include_top=False, weights=_weights_arg(spec, weights_file), input_shape=(size, size, 3)
        )
    except Exception as exc:  # noqa: BLE001 - download or shape problems become a readable reason
        if spec.model.weights == "imagenet":
            raise ModelError(
                f"could not load ImageNet weights ({exc}); use a local weights file or weights null"
            ) from exc
        raise ModelError(f"could not build Inception-V3 at image_size {size}: {exc}") from exc
    if weights_file is not None:
        try:
            base.load_weights(str(weights_file))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"weights file {weights_file.name!r} does not fit Inception-V3 without its top: {exc}"
            ) from exc
    return base


def _block_start(names: list[str], layers: list, block: str) -> int:
    """Index of the first layer of Inception block `block` ("mixedK"): the layer after the previous block's
    concatenation, or after the stem's last max-pooling for mixed0. The base's layers are in an order where
    each block's layers lie between those two points (checked in tests)."""
    k = int(block[len("mixed") :])
    if k > 0:
        return names.index(f"mixed{k - 1}") + 1
    end = names.index("mixed0")
    pools = [i for i, layer in enumerate(layers[:end]) if isinstance(layer, keras.layers.MaxPooling2D)]
    return pools[-1] + 1


def set_trainable(base: keras.Model, trainable: str | int) -> int:
    """Freeze the base as asked; returns how many base layers train."""
    if trainable == "head":
        base.trainable = False
        return 0
    base.trainable = True  # each layer is set below: a functional model does not pass this on to its layers
    if trainable == "all":
        start = 0
    elif isinstance(trainable, int):
        start = max(0, len(base.layers) - trainable)
    else:
        names = [layer.name for layer in base.layers]
        if trainable not in names:
            raise ModelError(f"model.trainable {trainable!r} is not a block of Inception-V3")
        start = _block_start(names, base.layers, trainable)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start
    return len(base.layers) - start


def batchnorm_mode(spec: JobSpec) -> str:
    """ "frozen" or "train": what the base's BatchNorm layers do when the base trains (`contract.resolved`)."""
    return resolve_batchnorm(spec.model.batchnorm, spec.model.weights)


def freeze_batchnorm(base: keras.Model) -> int:
    """Keras 3 runs a non-trainable BatchNormalization in inference mode: its moving statistics stay as loaded,
    whatever `training` the outer model is called with. The convolutions keep their own `trainable`."""
    frozen = 0
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def regularize_base(base: keras.Model, l2: keras.regularizers.Regularizer) -> int:
    """L2 on the trainable base kernels. Keras 3 attaches a regularizer to a variable when the layer creates it,
    so the built layers get it on their kernel variable (what `model.losses` reads) and in their config (what a
    saved model rebuilds from). Returns how many kernels are regularized."""
    n = 0
    for layer in base.layers:
        kernel = getattr(layer, "kernel", None)
        if layer.trainable and kernel is not None and hasattr(layer, "kernel_regularizer"):
            layer.kernel_regularizer = l2
            kernel.regularizer = l2
            n += 1
    return n


# --- the head, described once -------------------------------------------------------------------------
# The layers after the base's pooled features, in order. `build_model` stacks them on the base; the
# feature-cached path (`features.split_model`) runs the built model's own layers by these names, and the
# head's update ratio reads their weights (`head_weights`). A new head layer or option goes here only.

BASE_LAYER = "inception_v3"
POOL_LAYER = "pool"


@dataclass(frozen=True)
class HeadLayer:
    name: str
    make: Callable[[JobSpec, int, keras.regularizers.Regularizer | None], keras.layers.Layer]


def _dense_dropout(spec: JobSpec) -> float:
    reg = spec.regularization
    return reg.dense_dropout if reg.dense_dropout is not None else reg.dropout


HEAD: tuple[HeadLayer, ...] = (
    HeadLayer(
        "dropout_pool", lambda spec, n, l2: keras.layers.Dropout(spec.regularization.dropout, name="dropout_pool")
    ),
    HeadLayer(
        "dense",
        lambda spec, n, l2: keras.layers.Dense(
            spec.model.dense_units, activation="relu", kernel_regularizer=l2, name="dense"
        ),
    ),
    HeadLayer("dropout_dense", lambda spec, n, l2: keras.layers.Dropout(_dense_dropout(spec), name="dropout_dense")),
    # float32 output under a mixed precision policy: the softmax and the loss stay exact
    HeadLayer(
        "predictions",
        lambda spec, n, l2: keras.layers.Dense(
            n, activation="softmax", kernel_regularizer=l2, dtype="float32", name="predictions"
        ),
    ),
)
HEAD_LAYERS = tuple(layer.name for layer in HEAD)


def head_weights(model: keras.Model) -> list:
    """The trainable weights of the head's layers (those with weights: the two Dense layers today)."""
    return [w for name in HEAD_LAYERS for w in model.get_layer(name).trainable_weights]


def build_model(spec: JobSpec, n_classes: int, weights_file: Path | None = None) -> keras.Model:
    reg = spec.regularization
    l2 = keras.regularizers.L2(reg.l2) if reg.l2 else None
    base = build_base(spec, weights_file)
    set_trainable(base, spec.model.trainable)
    if batchnorm_mode(spec) == "frozen":
        freeze_batchnorm(base)
    if l2 is not None and reg.l2_base:
        regularize_base(base, l2)
    size = spec.dataset.image_size
    inputs = keras.Input((size, size, 3), name="image")
    # No training=False here: Keras 3 passes the outer call's `training` to every nested layer anyway.
    # BatchNorm's mode comes from its `trainable` (freeze_batchnorm).
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    for layer in HEAD:
        x = layer.make(spec, n_classes, l2)(x)
    return keras.Model(inputs, x, name="plateau_inception_v3")


def make_optimizer(spec: JobSpec) -> keras.optimizers.Optimizer:
    opt = spec.optimizer
    kw = {"learning_rate": opt.learning_rate}
    if opt.weight_decay is not None:
        kw["weight_decay"] = opt.weight_decay
    if opt.name == "adam":
        return keras.optimizers.Adam(**kw)
    if opt.name == "adamw":
        return keras.optimizers.AdamW(**kw)
    if opt.name == "sgd":
        return keras.optimizers.SGD(momentum=opt.momentum, **kw)
    return keras.optimizers.RMSprop(momentum=opt.momentum, **kw)
