"""Small Keras callbacks, one job each."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

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


class BatchLossStats(keras.callbacks.Callback):
    """Per-batch losses recovered from Keras' running mean, for mean/std/max and non-finite counts."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.losses: list[float] = []
        self._prev_mean = 0.0
        self.train_seconds = 0.0
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        mean = float((logs or {}).get("loss", float("nan")))
        n = batch + 1
        self.losses.append(mean * n - self._prev_mean * (n - 1) if math.isfinite(mean) else mean)
        self._prev_mean = mean if math.isfinite(mean) else self._prev_mean
        self.train_seconds = time.perf_counter() - self._t0

    def summary(self) -> dict[str, Any]:
        arr = np.asarray(self.losses, dtype="float64")
        finite = arr[np.isfinite(arr)]
        return {
            "batch_loss_mean": float(finite.mean()) if finite.size else None,
            "batch_loss_std": float(finite.std()) if finite.size else None,
            "batch_loss_max": float(finite.max()) if finite.size else None,
            "nonfinite_batches": int(arr.size - finite.size),
        }


class EvalProbe:
    """Inference-mode passes a per-epoch diagnosis needs: a fixed training subset, the validation set, one batch's gradients."""

    def __init__(self, model: keras.Model, loss_fn: keras.losses.Loss, train_subset: tf.data.Dataset,
                 val: tf.data.Dataset, classes: list[str], head_layers: tuple[str, ...], base: keras.Model):
        self.model, self.loss_fn, self.train_subset, self.val, self.classes = model, loss_fn, train_subset, val, classes
        self.probe_batch = next(iter(train_subset))
        self.head_vars = [w for name in head_layers for w in model.get_layer(name).trainable_weights]
        names = [layer.name for layer in base.layers]
        last_block = names.index("mixed9") + 1 if "mixed9" in names else 0
        self.block_vars = [w for layer in base.layers[last_block:] for w in layer.trainable_weights]

    def _predict(self, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
        ys, ps = [], []
        for x, y in ds:
            ps.append(self.model(x, training=False).numpy())
            ys.append(y.numpy())
        return np.concatenate(ys), np.concatenate(ps)

    def measure(self, lr: float) -> dict[str, Any]:
        y, p = self._predict(self.train_subset)
        out: dict[str, Any] = {
            "train_eval_loss": float(self.loss_fn(y, p)),
            "train_eval_accuracy": float(np.mean(p.argmax(1) == y.argmax(1))),
        }
        y, p = self._predict(self.val)
        true, pred = y.argmax(1), p.argmax(1)
        k = len(self.classes)
        confusion = np.zeros((k, k), dtype=int)
        np.add.at(confusion, (true, pred), 1)
        support = confusion.sum(1)
        out["confusion"] = confusion.tolist()
        out["val_support"] = {c: int(support[i]) for i, c in enumerate(self.classes)}
        out["val_recall"] = {c: (float(confusion[i, i] / support[i]) if support[i] else None)
                             for i, c in enumerate(self.classes)}
        out.update(self._gradients(lr))
        return out

    def _gradients(self, lr: float) -> dict[str, Any]:
        x, y = self.probe_batch
        variables = self.model.trainable_weights
        # under mixed_float16, scale the loss as training does, so small float16 gradients do not flush to zero
        optimizer = getattr(self.model, "optimizer", None)
        scale = (float(keras.ops.convert_to_numpy(optimizer.scale_loss(1.0)))
                 if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else 1.0)
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=False)) * scale
        grads = dict(zip((id(v) for v in variables),
                         (None if g is None else tf.cast(g, tf.float32) / scale for g in tape.gradient(loss, variables))))

        def ratio(group: list) -> float | None:
            pairs = [(grads.get(id(v)), v) for v in group if grads.get(id(v)) is not None]
            if not pairs:
                return None
            g = math.sqrt(sum(float(tf.reduce_sum(tf.square(g_))) for g_, _ in pairs))
            w = math.sqrt(sum(float(tf.reduce_sum(tf.square(v_))) for _, v_ in pairs))
            return lr * g / w if w else None

        norms = [float(tf.norm(g)) for g in grads.values() if g is not None]
        return {
            "grad_norm": math.sqrt(sum(n * n for n in norms)) if norms else None,
            "update_ratio_head": ratio(self.head_vars),
            "update_ratio_base": ratio(self.block_vars),
        }


class EpochRecorder(keras.callbacks.Callback):
    """Writes one row per finished epoch to the sink, with the learning rate that epoch actually used."""

    def __init__(self, sink: Sink, n_train: int, stats: BatchLossStats, probe: EvalProbe | None):
        super().__init__()
        self.sink, self.n_train, self.stats, self.probe = sink, n_train, stats, probe
        self._last_lr: float | None = None
        self.rows: list[dict[str, Any]] = []  # this job's epochs so far, earlier attempts included

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._lr = current_lr(self.model)
        if self._last_lr is not None and self._lr < self._last_lr:
            self.sink.event("lr_reduced", f"learning rate {self._last_lr:.3g} → {self._lr:.3g}",
                            {"epoch": epoch + 1, "from": self._last_lr, "to": self._lr})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row: dict[str, Any] = {
            "epoch": epoch + 1,  # people count epochs from 1
            "learning_rate": self._lr,
            "epoch_seconds": time.perf_counter() - self._t0,
            "images_per_second": self.n_train / self.stats.train_seconds if self.stats.train_seconds else None,
        }
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                row[key] = float(logs[key])
        row.update(self.stats.summary())
        if self.probe is not None:
            row.update(self.probe.measure(self._lr))
        self._last_lr = self._lr
        self.sink.epoch(row)
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with two checkpoints kept, so a kill during a save falls back to the one before.

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
