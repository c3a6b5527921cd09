"""Small Keras callbacks, one job each.

The measuring callbacks add their signals to the epoch's `logs`; `EpochRecorder` and the per-epoch
diagnosis read them from there, so no callback holds a reference to another (but `BestEpoch`, which reuses
`EvalProbe`'s pass over the validation set rather than predicting it twice). They run after Keras'
own callbacks (TensorBoard, ReduceLROnPlateau, EarlyStopping), which see only Keras' metrics.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from contract import predictions
from contract.lr_cuts import is_cut
from models.artifacts import keep_copy, written_atomically
from worker.training.sink import Sink


def current_lr(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class StopOnEvent(keras.callbacks.Callback):
    """Stops training at the next batch boundary once `event` is set (cancel, worker shutdown)."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.event.is_set():
            self.model.stop_training = True


class LearningRateLog(keras.callbacks.Callback):
    """`learning_rate`: the rate this epoch trained with (ReduceLROnPlateau may cut it as the epoch ends)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._lr = current_lr(self.model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = self._lr


class Throughput(keras.callbacks.Callback):
    """`epoch_seconds` (training and validation) and `images_per_second` (training steps only)."""

    def __init__(self, n_train: int):
        super().__init__()
        self.n_train = n_train

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._train_seconds = 0.0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._train_seconds = time.perf_counter() - self._t0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._t0
            logs["images_per_second"] = self.n_train / self._train_seconds if self._train_seconds else None


def batch_losses(running_means: list[float], sizes: list[int]) -> list[float]:
    """Each batch's own loss from Keras' running loss, which is the mean weighted by batch size:
    l_n = (m_n·W_n − m_{n−1}·W_{n−1}) / w_n, with W_n the images seen up to batch n."""
    out, prev_total, seen = [], 0.0, 0
    for mean, size in zip(running_means, sizes):
        seen += size
        if not math.isfinite(mean):
            out.append(mean)
            continue
        total = mean * seen
        out.append((total - prev_total) / size)
        prev_total = total
    return out


class BatchLossStats(keras.callbacks.Callback):
    """`batch_loss_mean/std/max` over the epoch's training batches, and `nonfinite_batches`."""

    def __init__(self, n_train: int, batch_size: int):
        super().__init__()
        self.n_train, self.batch_size = n_train, batch_size

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._means: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._means.append(float((logs or {}).get("loss", float("nan"))))

    def _sizes(self) -> list[int]:
        return [max(1, min(self.batch_size, self.n_train - i * self.batch_size)) for i in range(len(self._means))]

    def summary(self) -> dict[str, Any]:
        arr = np.asarray(batch_losses(self._means, self._sizes()), dtype="float64")
        finite = arr[np.isfinite(arr)]
        return {
            "batch_loss_mean": float(finite.mean()) if finite.size else None,
            "batch_loss_std": float(finite.std()) if finite.size else None,
            "batch_loss_max": float(finite.max()) if finite.size else None,
            "nonfinite_batches": int(arr.size - finite.size),
        }

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self.summary())


class UpdateRatio(keras.callbacks.Callback):
    """`update_ratio_<part>`: ‖W_after − W_before‖ / ‖W_before‖ across one optimizer step, the real step the
    optimizer took, measured once per epoch on the middle step (DeepDiagnosis' per-layer check, per part)."""

    def __init__(self, parts: dict[str, list], steps_per_epoch: int):
        super().__init__()
        self.parts = {name: list(weights) for name, weights in parts.items()}  # an empty part (frozen) logs None
        self.step = max(0, steps_per_epoch // 2)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._before: dict[str, list[np.ndarray]] | None = None
        self._ratios: dict[str, float | None] = dict.fromkeys(self.parts)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch == self.step:
            self._before = {name: [np.array(w.numpy(), dtype="float64") for w in ws] for name, ws in self.parts.items()}

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if batch != self.step or self._before is None:
            return
        for name, weights in self.parts.items():
            before = self._before[name]
            delta = math.sqrt(
                sum(float(np.sum(np.square(np.asarray(w.numpy(), "float64") - b))) for w, b in zip(weights, before))
            )
            norm = math.sqrt(sum(float(np.sum(np.square(b))) for b in before))
            self._ratios[name] = delta / norm if norm and math.isfinite(delta) else None  # no weights: None
        self._before = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update({f"update_ratio_{name}": value for name, value in self._ratios.items()})


class EvalProbe(keras.callbacks.Callback):
    """The model in inference mode after each epoch: a fixed training subset (`train_eval_loss`,
    `train_eval_accuracy`), the validation set (`confusion`, `val_recall`, `val_support`), the weight penalty
    (`regularization_loss`) and one batch's gradient norm (`grad_norm`, for people).

    `train_eval_loss` includes the same weight penalty Keras adds to `val_loss`, so the two compare like for like.
    """

    def __init__(
        self, loss_fn: keras.losses.Loss, train_subset: tf.data.Dataset, val: tf.data.Dataset, classes: list[str]
    ):
        super().__init__()
        self.loss_fn, self.train_subset, self.val, self.classes = loss_fn, train_subset, val, classes
        self.probe_batch = next(iter(train_subset))
        self.val_labels: np.ndarray | None = None  # the last epoch's, in validation-file order (BestPredictions)
        self.val_predicted: np.ndarray | None = None
        self._gradients: Any = None
        self._forward: Any = None

    def _predict(self, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
        # The inference pass compiled once (tf.function): called eagerly it dispatches every layer of the base from
        # Python, seconds an epoch for a full Inception-V3. Not Keras' predict_on_batch: under MirroredStrategy it
        # returns every replica's copy of the batch.
        if self._forward is None:
            self._forward = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        ys, ps = [], []
        for x, y in ds:
            ps.append(np.asarray(self._forward(x), dtype="float32"))
            ys.append(y.numpy())
        return np.concatenate(ys), np.concatenate(ps)

    def penalty(self) -> float:
        losses = self.model.losses
        return float(sum(float(keras.ops.convert_to_numpy(loss)) for loss in losses)) if losses else 0.0

    def measure(self) -> dict[str, Any]:
        penalty = self.penalty()
        y, p = self._predict(self.train_subset)
        out: dict[str, Any] = {
            "train_eval_loss": float(self.loss_fn(y, p)) + penalty,
            "train_eval_accuracy": float(np.mean(p.argmax(1) == y.argmax(1))),
            "regularization_loss": penalty,
        }
        y, p = self._predict(self.val)
        true, pred = y.argmax(1), p.argmax(1)
        self.val_labels, self.val_predicted = true, pred
        k = len(self.classes)
        confusion = np.zeros((k, k), dtype=int)
        np.add.at(confusion, (true, pred), 1)
        support = confusion.sum(1)
        out["confusion"] = confusion.tolist()
        out["val_support"] = {c: int(support[i]) for i, c in enumerate(self.classes)}
        out["val_recall"] = {
            c: (float(confusion[i, i] / support[i]) if support[i] else None) for i, c in enumerate(self.classes)
        }
        out["grad_norm"] = self._grad_norm()
        return out

    def _grad_norm(self) -> float | None:
        if self._gradients is None:  # traced once, for the same reason as the predict step
            self._gradients = tf.function(self._eager_gradients, reduce_retracing=True)
        x, y = self.probe_batch
        norms = [float(tf.norm(tf.cast(g, tf.float32))) for g in self._gradients(x, y) if g is not None]
        return math.sqrt(sum(n * n for n in norms)) if norms else None

    def _eager_gradients(self, x: tf.Tensor, y: tf.Tensor) -> list:
        variables = self.model.trainable_weights
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=False))
        return tape.gradient(loss, variables)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.update(self.measure())


class EpochRecorder(keras.callbacks.Callback):
    """Writes one row per finished epoch to the sink from the epoch's `logs`, and records learning-rate cuts."""

    def __init__(self, sink: Sink, last_lr: float | None = None):
        super().__init__()
        self.sink = sink
        self._last_lr = last_lr  # the rate of the last recorded epoch, earlier attempts included

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        lr = current_lr(self.model)
        if is_cut(self._last_lr, lr):
            self.sink.event(
                "lr_reduced",
                f"learning rate {self._last_lr:.3g} → {lr:.3g}",
                {"epoch": epoch + 1, "from": self._last_lr, "to": lr},
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = epoch_row(epoch, logs or {})
        self._last_lr = row.get("learning_rate", self._last_lr)
        self.sink.epoch(row)


class BestEpoch(keras.callbacks.Callback):
    """At each new best `val_accuracy` (the first epoch reaching it): the predicted class of every validation image,
    so two jobs on the same images can be compared image by image, and the whole classifier's weights, which a
    warm start (`model.init_from`, checkpoint "best") loads. Reads what EvalProbe measured this epoch: no second
    pass over the validation set. `model` is the whole classifier (what trains may be its head alone)."""

    def __init__(self, sink: Sink, probe: EvalProbe, model: keras.Model, path: Path, best_so_far: float | None = None):
        super().__init__()
        self.sink, self.probe, self.best = sink, probe, best_so_far  # best_so_far: earlier attempts' (resume)
        self.classifier, self.path = model, path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_accuracy")
        if value is None or self.probe.val_predicted is None:
            return
        value = float(keras.ops.convert_to_numpy(value))
        if self.best is None or value > self.best:
            self.best = value
            partial = self.path.with_name("best.partial.weights.h5")
            self.classifier.save_weights(partial)
            os.replace(partial, self.path)  # a crash mid-write leaves the previous best whole
            self.sink.predictions(
                predictions.encode(epoch + 1, self.probe.val_predicted.tolist(), self.probe.val_labels.tolist())
            )


def epoch_row(epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
    """The row of a finished epoch: everything the callbacks logged, numbers as plain Python values."""
    row: dict[str, Any] = {"epoch": epoch + 1}  # people count epochs from 1
    for key, value in logs.items():
        if isinstance(value, (dict, list, int, float, type(None))) and not isinstance(value, bool):
            row[key] = value
        else:  # a numpy or tensor scalar from Keras
            row[key] = float(keras.ops.convert_to_numpy(value))
    return row


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with two checkpoints kept, so a kill during a save falls back to the one before,
    and every file written whole: under a temporary name, then renamed (`models.artifacts`), so a full disk or
    a kill mid-save leaves the last good checkpoint in place and no truncated one.

    If even that cannot be read (a kill during the very first save), training starts over instead of failing.
    """

    def __init__(self, backup_dir: str, on_discard=None):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)
        self.on_discard = on_discard

    def on_train_begin(self, logs: dict | None = None) -> None:
        try:
            super().on_train_begin(logs)
        except OSError as exc:
            import shutil

            shutil.rmtree(self.backup_dir, ignore_errors=True)
            self.model._initial_epoch = 0
            if self.on_discard is not None:
                self.on_discard(f"checkpoint unreadable ({exc}); training restarts from epoch 1")

    def _save_model(self) -> None:
        # Keras' own save copies the latest files to the previous ones, then overwrites the latest in place.
        # Same steps and file names (its restore reads them), each one atomic.
        os.makedirs(self.backup_dir, exist_ok=True)
        latest_to_previous = (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
        )
        if self.double_checkpoint:
            for latest, previous in latest_to_previous:
                if os.path.exists(latest):
                    keep_copy(Path(latest), Path(previous))
        with written_atomically(Path(self._weights_path)) as tmp:
            self.model.save_weights(filepath=str(tmp), overwrite=True)
        with written_atomically(Path(self._training_metadata_path)) as tmp:
            tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
