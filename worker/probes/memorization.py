"""Memorization ("overfit one batch", Karpathy 2019): with regularization off, can the model drive the loss on a
small balanced subset to near zero in a fixed number of steps? If not, the fault is optimisation or wiring (rate,
frozen random base, a dominant penalty), not generalisation (overfitting, label noise, imbalance)."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from analysis.stats import wilson
from worker.probes import steps as train_steps
from worker.probes.budget import Budget

PER_CLASS = 8
STEPS = 100
FIT_ACCURACY = 0.95
FIT_LOSS_SHARE = 0.1  # of ln K


def balanced_subset(
    labels: list[int], n_classes: int, *, per_class: int = PER_CLASS, seed: int | None = 0
) -> list[int]:
    """Indices of up to `per_class` images of each class (as many as every class has, so the subset is balanced)."""
    by_class = [[i for i, label in enumerate(labels) if label == k] for k in range(n_classes)]
    take = min([per_class, *(len(members) for members in by_class)])
    rng = random.Random(seed)
    return sorted(i for members in by_class for i in rng.sample(members, take))


def fitted(accuracy: float, loss: float, n_classes: int) -> bool:
    return accuracy >= FIT_ACCURACY or loss <= FIT_LOSS_SHARE * math.log(n_classes)


def run(
    model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int = STEPS,
    budget: Budget,
    batch_size: int,
    per_call: int = train_steps.PER_CALL,
) -> dict[str, Any]:
    """Train `model` (a compiled copy, regularization off) on (x, y) for `steps` steps, then measure it in inference
    mode. x: inputs, y: one-hot labels. Shuffled epochs of `batch_size`, `per_call` steps in one call of a compiled
    loop (`steps.Steps`): many on a small head, one on a whole model; the budget is checked between calls."""
    import keras

    n, k = len(x), int(y.shape[1])
    order, rng = np.arange(n), np.random.default_rng(0)
    batches: list[np.ndarray] = []  # each step's indices, epoch after epoch
    while n and len(batches) < steps:
        rng.shuffle(order)
        batches += [order[start : start + batch_size].copy() for start in range(0, n, batch_size)]
    batches = batches[:steps]
    run_steps = train_steps.Steps(model)
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))  # the job's rate throughout
    done = 0
    while done < len(batches) and not budget.over():
        chunk = batches[done : done + max(1, per_call)]
        run_steps([rate] * len(chunk), [(x[idx], y[idx]) for idx in chunk])
        done += len(chunk)
    probs = np.concatenate(
        [np.asarray(model(x[i : i + batch_size], training=False), "float32") for i in range(0, n, batch_size)]
    )
    loss = float(keras.losses.CategoricalCrossentropy()(y, probs))
    accuracy = float(np.mean(probs.argmax(1) == y.argmax(1)))
    return summarize(accuracy, loss, images=n, n_classes=k, steps=done, truncated=budget.truncated)


def summarize(accuracy: float, loss: float, *, images: int, n_classes: int, steps: int, truncated: bool) -> dict:
    chance = math.log(n_classes)
    ok = fitted(accuracy, loss, n_classes) if math.isfinite(loss) else False
    what = "fits" if ok else "does not fit"
    statement = (
        f"with regularization off, the model {what} {images} training images ({images // n_classes} per class) in "
        f"{steps} steps: accuracy {accuracy:.2f}, loss {loss:.3g} (ln K = {chance:.3g})"
    )
    if not ok and wilson(accuracy * images, images)[1] < FIT_ACCURACY:
        statement += "; an optimisation or wiring fault, not a generalisation one"
    elif not ok:  # e.g. 30 of 32 right: 95 % interval 0.80–0.98; wrong labels alone are slower to memorize
        statement += f"; short of {FIT_ACCURACY:g} by no more than the sampling noise of {images} images"
    if truncated:
        statement += " (budget ran out)"
    return {
        "images": images,
        "per_class": images // n_classes,
        "steps": steps,
        "accuracy": accuracy,
        "loss": loss if math.isfinite(loss) else float("nan"),
        "chance_loss": chance,
        "fitted": ok,
        "truncated": truncated,
        "statement": statement,
    }
