"""Train one job spec: data → model → Keras fit with checkpoints, reporting every epoch to a sink."""

from __future__ import annotations

import importlib.util
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from models.paths import resolve_under
from models.spec import JobSpec
from worker.training.errors import DataError
from worker.training.sink import Sink

TRAIN_EVAL_IMAGES = 256  # fixed training subset measured in inference mode each epoch


@dataclass
class TrainResult:
    status: str  # succeeded | cancelled | released
    stop_reason: str | None
    model_path: str | None
    epochs_done: int
    tensorboard_dir: str | None = None  # TensorBoard event files of every attempt (train/ and validation/)


def configure_devices() -> list:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # share the card politely: allocate as needed, not all at once
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this process
    return gpus


def _interrupted(stop: threading.Event, release: threading.Event | None, epochs_done: int,
                 tensorboard_dir: str | None) -> TrainResult:
    if release is not None and release.is_set():
        return TrainResult("released", "worker shutting down", None, epochs_done, tensorboard_dir)
    return TrainResult("cancelled", "cancelled by request", None, epochs_done, tensorboard_dir)


def class_weights(counts: dict[str, int], classes: list[str]) -> dict[int, float]:
    total, k = sum(counts.values()), len(classes)
    return {i: total / (k * counts[c]) for i, c in enumerate(classes)}


def train(spec: JobSpec, *, data_root: Path, workdir: Path, sink: Sink, stop: threading.Event,
          release: threading.Event | None = None, history: list[dict] | None = None) -> TrainResult:
    """Runs `spec` to the end, to an early stop, or until `stop` is set. Resumes from `workdir` if a backup exists."""
    import keras

    from worker.training import callbacks as cb
    from worker.training.features import MAX_CACHE_BYTES, cache_bytes, extract, feature_dataset, pin_base, split_model
    from worker.training.model import build_model, make_optimizer
    from worker.training.performance import choose_strategy, plan, precision_policy
    from worker.training.pipeline import augmenter, make_dataset
    from worker.training.scan import scan, split
    from worker.training.stagnation import StopOnStagnation, check_before_training

    gpus = configure_devices()
    ds_spec = spec.dataset
    seed = spec.seed if spec.seed is not None else ds_spec.seed
    if seed is not None:
        keras.utils.set_random_seed(seed)
    train_set = scan(resolve_under(data_root, ds_spec.train_dir), field_name="train_dir")
    if ds_spec.val_dir is not None:
        val_set = scan(resolve_under(data_root, ds_spec.val_dir), field_name="val_dir", classes=train_set.classes)
    else:
        train_set, val_set = split(train_set, ds_spec.validation_split, ds_spec.seed)
    if len(train_set) < spec.batch_size:
        sink.event("warning", f"train set has {len(train_set)} images, fewer than batch_size {spec.batch_size}")
    counts = {"train": train_set.counts(), "val": val_set.counts()}
    sink.class_counts(counts)
    check_before_training(spec, counts, sink)

    weights_file = resolve_under(data_root, spec.model.weights) if spec.model.weights not in (None, "imagenet") else None
    if weights_file is not None and not weights_file.is_file():
        raise DataError(f"weights file {spec.model.weights!r} does not exist under the data root")
    augmentation = augmenter(spec.regularization.augmentation, seed)  # float32 layers: built outside the policy
    strategy = choose_strategy()
    perf = plan(spec, gpus=len(gpus), replicas=strategy.num_replicas_in_sync, has_augmentation=augmentation is not None)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=spec.regularization.label_smoothing)
    with strategy.scope(), precision_policy(perf.policy):
        model = build_model(spec, len(train_set.classes), weights_file)
        if perf.cache_features and cache_bytes(len(train_set) + len(val_set), model) > MAX_CACHE_BYTES:
            perf = replace(perf, cache_features=False,
                           cache_skipped_because=f"features of {len(train_set) + len(val_set)} images exceed "
                                                 f"{MAX_CACHE_BYTES >> 20} MiB")
        extractor, trained = split_model(model) if perf.cache_features else (None, model)
        optimizer = make_optimizer(spec)
        if perf.policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trained.compile(optimizer=optimizer, loss=loss_fn, metrics=["accuracy"], jit_compile=perf.jit_compile)

    size, bs = ds_spec.image_size, perf.global_batch_size  # batch_size is per replica
    step = max(1, len(train_set) // TRAIN_EVAL_IMAGES)
    backup_dir = workdir / "backup"
    if extractor is None:
        train_ds = make_dataset(train_set, image_size=size, batch_size=bs, training=True, seed=seed,
                                augmentation=augmentation)
        val_ds = make_dataset(val_set, image_size=size, batch_size=bs, training=False, seed=seed)
        subset = type(train_set)(train_set.classes, train_set.paths[::step], train_set.labels[::step])
        subset_ds = make_dataset(subset, image_size=size, batch_size=bs, training=False, seed=seed)
        sink.event("performance", perf.describe(), asdict(perf))
    else:
        base_dir = backup_dir
        backup_dir = backup_dir / "head"  # the head's checkpoints; a full-model checkpoint would not fit it
        if spec.model.weights is None:
            warning = pin_base(model.get_layer("inception_v3"), base_dir / "frozen_base.weights.h5")
            if warning is not None:
                shutil.rmtree(backup_dir, ignore_errors=True)
                sink.event("warning", f"{warning}; training restarts from epoch 1")
        t0 = time.perf_counter()
        datasets = [make_dataset(images, image_size=size, batch_size=bs, training=False, seed=seed, cache=False)
                    for images in (train_set, val_set)]
        extracted = extract(extractor, datasets, stop, jit_compile=perf.jit_compile)
        if extracted is None:
            return _interrupted(stop, release, max((r["epoch"] for r in history or []), default=0), None)
        features = dict(zip(("train", "val"), extracted))
        seconds = time.perf_counter() - t0
        k = len(train_set.classes)
        train_ds = feature_dataset(features["train"], train_set.labels, k, batch_size=bs, training=True, seed=seed)
        val_ds = feature_dataset(features["val"], val_set.labels, k, batch_size=bs, training=False, seed=seed)
        subset_ds = feature_dataset(features["train"][::step], train_set.labels[::step], k, batch_size=bs,
                                    training=False, seed=seed)
        sink.event("performance", f"{perf.describe()}; features of {len(train_set) + len(val_set)} images "
                                  f"computed in {seconds:.1f} s", {**asdict(perf), "feature_seconds": seconds})

    workdir.mkdir(parents=True, exist_ok=True)
    stats = cb.BatchLossStats()
    probe = cb.EvalProbe(trained, loss_fn, subset_ds, val_ds, train_set.classes, ("dense", "predictions"),
                         model.get_layer("inception_v3"))
    callbacks: list[keras.callbacks.Callback] = [stats]
    early = None
    cbs = spec.callbacks
    if cbs.reduce_lr_on_plateau is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(**cbs.reduce_lr_on_plateau.model_dump()))
    if cbs.early_stopping is not None:
        early = keras.callbacks.EarlyStopping(**cbs.early_stopping.model_dump())
        callbacks.append(early)
    recorder = cb.EpochRecorder(sink, len(train_set), stats, probe)
    recorder.rows = list(history or [])
    stagnation = StopOnStagnation(spec, counts, sink, recorder)
    tensorboard_dir = workdir / "tensorboard"
    if importlib.util.find_spec("tensorboard") is not None:  # tf.summary needs it; without it the callback crashes
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
    else:
        sink.event("warning", "the tensorboard package is not installed: this job writes no TensorBoard event files")
    callbacks += [
        recorder,
        stagnation,
        cb.StopOnEvent(stop),
        # Last, so an epoch's row is written before its checkpoint: a crash in between re-runs the
        # epoch and the upsert replaces the row, never leaving an epoch unrecorded.
        cb.ResumableBackup(str(backup_dir), on_discard=lambda why: sink.event("warning", why)),
    ]

    history = trained.fit(
        train_ds, validation_data=val_ds, epochs=spec.epochs, callbacks=callbacks, verbose=0,
        class_weight=class_weights(counts["train"], train_set.classes) if spec.class_weight == "balanced" else None,
    )
    epochs_done = max((e + 1 for e in history.epoch), default=0)
    if stop.is_set() or (release is not None and release.is_set()):
        return _interrupted(stop, release, epochs_done, str(tensorboard_dir))
    reason = None
    if stagnation.stopped_by is not None:
        reason = stagnation.stop_reason()
    elif early is not None and early.stopped_epoch > 0:
        reason = (f"early_stopping: {early.monitor} did not improve by more than {early.min_delta} "
                  f"for {early.patience} epochs; stopped after epoch {early.stopped_epoch + 1}")
        sink.event("early_stopped", reason, {"epoch": early.stopped_epoch + 1, "monitor": early.monitor})
    model_path = workdir / "model.keras"
    if trained is not model:  # the head trained the model's own layers: save the whole classifier, compiled alike
        with strategy.scope():
            model.compile(optimizer=trained.optimizer, loss=loss_fn, metrics=["accuracy"])
    model.save(model_path)
    shutil.rmtree(workdir / "backup", ignore_errors=True)  # the saved model supersedes the resume point
    return TrainResult("succeeded", reason, str(model_path), epochs_done, str(tensorboard_dir))
