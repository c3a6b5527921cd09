"""Train one job spec: data → model → Keras fit with checkpoints, reporting every epoch to a sink."""

from __future__ import annotations

import importlib.util
import math
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from contract.resolved import train_eval_indices
from contract.spec import JobSpec
from models.artifacts import remove_partials, written_atomically
from models.checkpoints import BEST_WEIGHTS, LAST_MODEL, TRAIN_FEATURES, checkpoint_file
from models.paths import resolve_under
from worker.training.errors import DataError
from worker.training.sink import Sink
from worker.training.weights_file import missing_reason, weights_file_for


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


def _interrupted(
    stop: threading.Event, release: threading.Event | None, epochs_done: int, tensorboard_dir: str | None
) -> TrainResult:
    if release is not None and release.is_set():
        return TrainResult("released", "worker shutting down", None, epochs_done, tensorboard_dir)
    return TrainResult("cancelled", "cancelled by request", None, epochs_done, tensorboard_dir)


def class_weights(counts: dict[str, int], classes: list[str]) -> dict[int, float]:
    total, k = sum(counts.values()), len(classes)
    return {i: total / (k * counts[c]) for i, c in enumerate(classes)}


@dataclass
class Prepared:
    """The job's images, scanned and split, with the class counts the analysis reads."""

    train_set: Any
    val_set: Any
    counts: dict[str, dict[str, int]]
    weights_file: Path | None


@dataclass
class Built:
    """The compiled model and what trains: `trained` is `model`, or its head on cached features."""

    model: Any
    trained: Any
    extractor: Any
    loss_fn: Any
    strategy: Any
    perf: Any
    augmentation: Any


@dataclass
class Datasets:
    train: Any
    val: Any
    train_subset: Any  # fixed, unshuffled, measured in inference mode each epoch
    backup_dir: Path


def prepare_data(spec: JobSpec, *, data_root: Path, sink: Sink) -> Prepared:
    """Scan and split the images, report the class counts, and check the classes before any training."""
    from worker.training.scan import scan, split
    from worker.training.stagnation import check_before_training

    ds_spec = spec.dataset
    train_set = scan(
        resolve_under(data_root, ds_spec.train_dir), field_name="train_dir", root=data_root, exclude=ds_spec.exclude
    )
    if ds_spec.val_dir is not None:
        val_set = scan(
            resolve_under(data_root, ds_spec.val_dir), field_name="val_dir", classes=train_set.classes, root=data_root
        )
    else:
        train_set, val_set = split(train_set, ds_spec.validation_split, ds_spec.seed)
    if len(train_set) < spec.batch_size:
        sink.event("warning", f"train set has {len(train_set)} images, fewer than batch_size {spec.batch_size}")
    counts = {"train": train_set.counts(), "val": val_set.counts()}
    sink.class_counts(counts)
    check_before_training(spec, counts, sink)
    weights_file = weights_file_for(spec, data_root=data_root)
    if weights_file is not None and not weights_file.is_file():
        raise DataError(missing_reason(spec, weights_file))
    return Prepared(train_set, val_set, counts, weights_file)


def build_and_compile(spec: JobSpec, data: Prepared, *, gpus: int, seed: int | None) -> Built:
    """The model under the job's strategy and dtype policy, compiled; the head alone when features are cached."""
    import keras

    from worker.training.features import MAX_CACHE_BYTES, cache_bytes, split_model
    from worker.training.model import build_model, make_optimizer
    from worker.training.performance import choose_strategy, plan, precision_policy
    from worker.training.pipeline import augmenter

    augmentation = augmenter(spec.regularization.augmentation, seed)  # float32 layers: built outside the policy
    strategy = choose_strategy()
    perf = plan(spec, gpus=gpus, replicas=strategy.num_replicas_in_sync, has_augmentation=augmentation is not None)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=spec.regularization.label_smoothing)
    n_images = len(data.train_set) + len(data.val_set)
    with strategy.scope(), precision_policy(perf.policy):
        model = build_model(spec, len(data.train_set.classes), data.weights_file)
        if perf.cache_features and cache_bytes(n_images, model) > MAX_CACHE_BYTES:
            perf = replace(
                perf,
                cache_features=False,
                cache_skipped_because=f"features of {n_images} images exceed {MAX_CACHE_BYTES >> 20} MiB",
            )
        extractor, trained = split_model(model) if perf.cache_features else (None, model)
        optimizer = make_optimizer(spec)
        if perf.policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trained.compile(optimizer=optimizer, loss=loss_fn, metrics=["accuracy"], jit_compile=perf.jit_compile)
    return Built(model, trained, extractor, loss_fn, strategy, perf, augmentation)


def warm_start(spec: JobSpec, built: Built, *, artifacts_root: Path, sink: Sink) -> None:
    """Load the whole classifier's weights of another job (`model.init_from`) before anything trains or features
    are cached; a resumed attempt's own backup replaces them afterwards (ResumableBackup)."""
    init = spec.model.init_from
    if init is None:
        return
    path = checkpoint_file(artifacts_root, init.job, init.checkpoint)
    if not path.is_file():
        raise DataError(f"model.init_from: job {init.job} has no {init.checkpoint!r} checkpoint")
    try:
        built.model.load_weights(path)
    except ValueError as exc:  # a head that does not match: the API checks this, a changed file may still differ
        raise DataError(f"model.init_from: the weights of job {init.job} do not fit this model ({exc})") from exc
    sink.event("warm_start", f"weights from job {init.job} ({init.checkpoint})", init.model_dump(mode="json"))


def make_datasets(
    spec: JobSpec, data: Prepared, built: Built, *, workdir: Path, sink: Sink, seed: int | None, stop: threading.Event
) -> Datasets | None:
    """tf.data pipelines of images, or of the frozen base's features computed once; None if stopped meanwhile."""
    from worker.training import stored_features
    from worker.training.features import extract, feature_dataset, pin_base
    from worker.training.model import batchnorm_mode
    from worker.training.pipeline import make_dataset

    train_set, val_set, perf = data.train_set, data.val_set, built.perf
    size, bs = spec.dataset.image_size, perf.global_batch_size  # batch_size is per replica
    picked = train_eval_indices(len(train_set))  # the subset the analysis sizes its noise by
    backup_dir = workdir / "backup"
    if built.extractor is None:
        train_ds = make_dataset(
            train_set, image_size=size, batch_size=bs, training=True, seed=seed, augmentation=built.augmentation
        )
        val_ds = make_dataset(val_set, image_size=size, batch_size=bs, training=False, seed=seed)
        subset = type(train_set)(
            train_set.classes, [train_set.paths[i] for i in picked], [train_set.labels[i] for i in picked]
        )
        subset_ds = make_dataset(subset, image_size=size, batch_size=bs, training=False, seed=seed)
        sink.event("performance", perf.describe(), {**asdict(perf), "batchnorm": batchnorm_mode(spec)})
        return Datasets(train_ds, val_ds, subset_ds, backup_dir)
    base_dir, backup_dir = backup_dir, backup_dir / "head"  # the head's checkpoints; a full-model one would not fit it
    # an earlier attempt's features may be of another base (a re-pinned one): none until this attempt's are stored
    (workdir / TRAIN_FEATURES).unlink(missing_ok=True)
    if spec.model.weights is None:
        warning = pin_base(built.model.get_layer("inception_v3"), base_dir / "frozen_base.weights.h5")
        if warning is not None:
            shutil.rmtree(backup_dir, ignore_errors=True)
            sink.event("warning", f"{warning}; training restarts from epoch 1")
    t0 = time.perf_counter()
    datasets = [
        make_dataset(images, image_size=size, batch_size=bs, training=False, seed=seed, cache=False)
        for images in (train_set, val_set)
    ]
    extracted = extract(built.extractor, datasets, stop, jit_compile=perf.jit_compile)
    if extracted is None:
        return None
    features = dict(zip(("train", "val"), extracted))
    seconds = time.perf_counter() - t0
    stored_features.save(  # for the job's probes: the same features, without building the base again
        workdir / TRAIN_FEATURES,
        features=features["train"],
        paths=train_set.paths,
        labels=train_set.labels,
        classes=train_set.classes,
        identity=stored_features.base_identity(spec, data.weights_file),
    )
    k = len(train_set.classes)
    train_ds = feature_dataset(features["train"], train_set.labels, k, batch_size=bs, training=True, seed=seed)
    val_ds = feature_dataset(features["val"], val_set.labels, k, batch_size=bs, training=False, seed=seed)
    subset_ds = feature_dataset(
        features["train"][picked], [train_set.labels[i] for i in picked], k, batch_size=bs, training=False, seed=seed
    )
    sink.event(
        "performance",
        f"{perf.describe()}; features of {len(train_set) + len(val_set)} images computed in {seconds:.1f} s",
        {**asdict(perf), "feature_seconds": seconds, "batchnorm": batchnorm_mode(spec)},
    )
    return Datasets(train_ds, val_ds, subset_ds, backup_dir)


def make_callbacks(
    spec: JobSpec,
    data: Prepared,
    built: Built,
    ds: Datasets,
    *,
    workdir: Path,
    sink: Sink,
    stop: threading.Event,
    history: list[dict] | None,
) -> tuple[list, dict]:
    """Keras' own callbacks first (they see only Keras' metrics), then the measuring callbacks that add signals to
    `logs`, then the ones that read them; the checkpoint last. Returns the list and the callbacks `finish` reads."""
    import keras

    from worker.training import callbacks as cb
    from worker.training.model import BASE_LAYER, head_weights
    from worker.training.stagnation import EpochDiagnosis

    n_train, bs = len(data.train_set), built.perf.global_batch_size
    callbacks: list = [cb.LearningRateLog()]
    cbs = spec.callbacks
    if cbs.reduce_lr_on_plateau is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(**cbs.reduce_lr_on_plateau.model_dump()))
    early = None
    if cbs.early_stopping is not None:
        early = keras.callbacks.EarlyStopping(**cbs.early_stopping.model_dump())
        callbacks.append(early)
    if importlib.util.find_spec("tensorboard") is not None:  # tf.summary needs it; without it the callback crashes
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(workdir / "tensorboard")))
    else:
        sink.event("warning", "the tensorboard package is not installed: this job writes no TensorBoard event files")
    head = head_weights(built.model)  # the weights whose step update_ratio_head measures
    base = built.model.get_layer(BASE_LAYER).trainable_weights if built.trained is built.model else []
    diagnosis = EpochDiagnosis(spec, data.counts, sink, history)
    last_lr = max(history or [], key=lambda r: r["epoch"], default={}).get("learning_rate")
    best_val = max((r["val_accuracy"] for r in history or [] if r.get("val_accuracy") is not None), default=None)
    probe = cb.EvalProbe(built.loss_fn, ds.train_subset, ds.val, data.train_set.classes)
    callbacks += [
        cb.Throughput(n_train),
        cb.BatchLossStats(n_train, bs),
        cb.UpdateRatio({"head": head, "base": base}, steps_per_epoch=math.ceil(n_train / bs)),
        probe,
        cb.BestEpoch(sink, probe, built.model, workdir / BEST_WEIGHTS, best_val),
        cb.EpochRecorder(sink, last_lr),
        diagnosis,
        cb.StopOnEvent(stop),
        # Last, so an epoch's row is written before its checkpoint: a crash in between re-runs the
        # epoch and the upsert replaces the row, never leaving an epoch unrecorded.
        cb.ResumableBackup(str(ds.backup_dir), on_discard=lambda why: sink.event("warning", why)),
    ]
    return callbacks, {"early": early, "diagnosis": diagnosis}


def stop_reason(early, diagnosis, sink: Sink) -> str | None:
    if diagnosis.stopped_by is not None:
        return diagnosis.stop_reason()
    if early is not None and early.stopped_epoch > 0:
        reason = (
            f"early_stopping: {early.monitor} did not improve by more than {early.min_delta} "
            f"for {early.patience} epochs; stopped after epoch {early.stopped_epoch + 1}"
        )
        sink.event("early_stopped", reason, {"epoch": early.stopped_epoch + 1, "monitor": early.monitor})
        return reason
    return None


def finish(built: Built, *, workdir: Path, reason: str | None, epochs_done: int) -> TrainResult:
    """Save the whole classifier; the saved model supersedes the resume point."""
    model_path = workdir / LAST_MODEL
    if built.trained is not built.model:  # the head trained the model's own layers: save the whole classifier
        with built.strategy.scope():
            built.model.compile(optimizer=built.trained.optimizer, loss=built.loss_fn, metrics=["accuracy"])
    with written_atomically(model_path) as tmp:  # a full disk leaves no truncated model.keras
        built.model.save(str(tmp))
    shutil.rmtree(workdir / "backup", ignore_errors=True)
    return TrainResult("succeeded", reason, str(model_path), epochs_done, str(workdir / "tensorboard"))


def train(
    spec: JobSpec,
    *,
    data_root: Path,
    workdir: Path,
    sink: Sink,
    stop: threading.Event,
    release: threading.Event | None = None,
    history: list[dict] | None = None,
) -> TrainResult:
    """Runs `spec` to the end, to an early stop, or until `stop` is set. Resumes from `workdir` if a backup exists."""
    import keras

    gpus = configure_devices()
    seed = spec.seed if spec.seed is not None else spec.dataset.seed
    if seed is not None:
        keras.utils.set_random_seed(seed)
    remove_partials(workdir)  # what a killed or failed attempt was writing; its last whole checkpoint is kept
    data = prepare_data(spec, data_root=data_root, sink=sink)
    built = build_and_compile(spec, data, gpus=len(gpus), seed=seed)
    warm_start(spec, built, artifacts_root=workdir.parent, sink=sink)
    ds = make_datasets(spec, data, built, workdir=workdir, sink=sink, seed=seed, stop=stop)
    if ds is None:
        return _interrupted(stop, release, max((r["epoch"] for r in history or []), default=0), None)
    workdir.mkdir(parents=True, exist_ok=True)
    callbacks, read_after = make_callbacks(
        spec, data, built, ds, workdir=workdir, sink=sink, stop=stop, history=history
    )
    counts = data.counts["train"]
    fitted = built.trained.fit(
        ds.train,
        validation_data=ds.val,
        epochs=spec.epochs,
        callbacks=callbacks,
        verbose=0,
        class_weight=class_weights(counts, data.train_set.classes) if spec.class_weight == "balanced" else None,
    )
    epochs_done = max((e + 1 for e in fitted.epoch), default=0)
    if stop.is_set() or (release is not None and release.is_set()):
        return _interrupted(stop, release, epochs_done, str(workdir / "tensorboard"))
    reason = stop_reason(read_after["early"], read_after["diagnosis"], sink)
    return finish(built, workdir=workdir, reason=reason, epochs_done=epochs_done)
