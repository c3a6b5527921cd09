"""Speed settings of a job: the dtype policy, the distribution strategy, and when to cache the frozen base's features."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from contract.spec import JobSpec

# Comma-separated device names ("/cpu:0,/cpu:1") to mirror training across instead of the visible GPUs.
DISTRIBUTE_DEVICES_ENV = "PLATEAU_DISTRIBUTE_DEVICES"


def resolve_precision(setting: str, gpus: int) -> str:
    """The Keras dtype policy for a spec's `performance.mixed_precision`.

    "auto" is mixed_float16 on a GPU and float32 on a CPU: on a CPU with AVX512-BF16 but no AMX, TensorFlow's
    bfloat16 convolutions measured 0.79× the speed of float32 (docs/benchmarks.md, Training). Ask for
    mixed_bfloat16 explicitly on a CPU where it pays (AMX), or to halve activation memory.
    """
    if setting == "off":
        return "float32"
    if setting == "auto":
        return "mixed_float16" if gpus else "float32"
    return setting


@contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Sets Keras' global dtype policy for the layers built inside, and puts the previous one back after:
    one worker process runs many jobs, and a built layer keeps the policy it was created with."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def choose_strategy(devices: list[str] | None = None):
    """MirroredStrategy over `devices`, over $PLATEAU_DISTRIBUTE_DEVICES, or over every visible GPU when there
    are several; otherwise TensorFlow's default (single-device) strategy."""
    import tensorflow as tf

    if devices is None:
        listed = os.environ.get(DISTRIBUTE_DEVICES_ENV, "")
        devices = [d.strip() for d in listed.split(",") if d.strip()] or None
    if devices:
        return tf.distribute.MirroredStrategy(devices=devices)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class Plan:
    """What a job's performance settings resolve to on this worker."""

    policy: str
    jit_compile: bool
    cache_features: bool
    replicas: int
    global_batch_size: int
    cache_skipped_because: str | None = None

    def describe(self) -> str:
        cache = "on" if self.cache_features else f"off ({self.cache_skipped_because})"
        return (
            f"precision {self.policy}, jit_compile {'on' if self.jit_compile else 'off'}, feature caching {cache}, "
            f"{self.replicas} replica(s), global batch {self.global_batch_size}"
        )


def plan(spec: JobSpec, *, gpus: int, replicas: int, has_augmentation: bool) -> Plan:
    perf = spec.performance
    why = None
    if perf.cache_features == "off":
        why = "cache_features is off"
    elif spec.model.trainable != "head":
        why = "base layers train"
    elif has_augmentation:
        why = "augmentation changes the images every epoch"
    return Plan(
        resolve_precision(perf.mixed_precision, gpus),
        perf.jit_compile,
        why is None,
        replicas,
        spec.batch_size * replicas,
        why,
    )
