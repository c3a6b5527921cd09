"""One probe, start to end: claim its row, run it within its budget on a copy of the job, record how it ended.

Plain functions; the Celery task only calls `run_probe`."""

from __future__ import annotations

import hashlib
import math
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from contract.spec import JobSpec
from models import probes as rows
from models.autopilot.hooks import after_probe_end
from models.db import session_scope
from models.settings import get_settings
from models.tables import Job, JobStatus
from worker.db_sink import db_retry
from worker.probes import context, linear, lr_range, memorization, steps
from worker.probes.budget import Budget
from worker.training.errors import DataError, ModelError

log = structlog.get_logger()


@dataclass
class Target:
    """The job as the probe reads it: its spec, images and latest weights."""

    job_id: uuid.UUID
    spec: JobSpec
    data: context.JobData
    weights: context.Weights
    data_root: Path
    workdir: Path | None = None  # the job's folder: where a head-only job keeps its training features

    @property
    def seed(self) -> int:
        spec = self.spec
        return spec.seed if spec.seed is not None else spec.dataset.seed if spec.dataset.seed is not None else 0

    @property
    def head_only(self) -> bool:
        return self.spec.model.trainable == "head"

    def model(self, spec: JobSpec | None = None):
        return context.build(spec or self.spec, len(self.data.classes), self.weights, data_root=self.data_root)

    def _prepared(self, stop: threading.Event):
        key = (str(self.job_id), self.weights.key(), tuple(self.data.files), self.spec.dataset.image_size)
        found = context.features(self.model, self.data, key=key, stop=stop)
        if found is None:
            raise Stopped()
        return found

    @cached_property
    def stored(self) -> np.ndarray | None:
        """The features the job's head-only training stored, when they are of these images through this base."""
        if not self.head_only or self.workdir is None:
            return None
        try:
            found = context.stored_features(self.workdir, self.data, data_root=self.data_root)
        except OSError as exc:  # the weights file unreadable meanwhile: compute them as without stored ones
            found = context.stored.Found(None, f"the base's weights unreadable ({exc})")
        log.info("probe features", source=found.reason if found.features is not None else f"computed: {found.reason}")
        return found.features

    def features(self, stop: threading.Event) -> np.ndarray:
        """The base's pooled features of the training images: those the job's training stored, else computed.
        Consecutive probes of a job on one worker share them and the model build: the base and its weights are the
        same whatever the head's regularization."""
        if self.stored is not None:
            return self.stored
        return self._prepared(stop)[0]

    def head(self, stop: threading.Event, spec: JobSpec | None = None):
        """A copy of the job's head with its latest weights, built as `spec` (default: the job's) asks. With stored
        features, the weights are read from the job's file without building the base."""
        k = len(self.data.classes)
        if self.stored is not None:
            try:
                return context.head_model(spec or self.spec, k, self.stored.shape[1], self._stored_head_weights())
            except (ModelError, ValueError) as exc:
                log.warning("head weights not readable on their own; building the model", error=str(exc))
        feats, weights = self._prepared(stop)
        return context.head_model(spec or self.spec, k, feats.shape[1], weights)

    def _stored_head_weights(self) -> dict[str, list[np.ndarray]]:
        if self.weights.path is not None:
            return context.stored_head_weights(self.weights, self.spec, len(self.data.classes), self.stored.shape[1])
        # the job's initial head, as Keras initialises it under the job's seed (a draw of its own: the whole
        # model's build draws the base's weights first)
        import keras

        keras.utils.set_random_seed(self.seed)
        fresh = context.head_model(self.spec, len(self.data.classes), self.stored.shape[1], {})
        return context.head_weights(fresh)


class Stopped(Exception):
    """The probe was cancelled (or its worker is shutting down) before it had anything to report."""


def _compile(model, spec: JobSpec, *, label_smoothing: float) -> None:
    import keras

    from worker.training.model import make_optimizer

    model.compile(
        optimizer=make_optimizer(spec),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        jit_compile=False,
    )


def probe_lr_range(target: Target, budget: Budget, inputs: dict[str, Any]) -> dict[str, Any]:
    """The sweep over what trains, from the weights the job started with (Smith's test is a pre-training
    experiment: from a converged model's weights every rate looks too high, as the loss has nowhere left to fall):
    a freshly initialised head on cached features, or the whole unfrozen model from its initial weights."""
    import keras

    spec, job_rate = target.spec, target.spec.optimizer.learning_rate
    num_it = int(inputs.get("num_it", lr_range.NUM_IT))
    keras.utils.set_random_seed(target.seed)
    if target.head_only:
        # the frozen base is the same at the start as at the end, so the features shared with the other probes serve
        feats = target.features(budget.stop)
        trained = context.head_model(spec, len(target.data.classes), feats.shape[1], {})
        batches = context.feature_batches(
            feats, target.data.labels, len(target.data.classes), spec.batch_size, target.seed
        )
        part, per_call = "head", steps.PER_CALL
    else:
        initial = context.Weights("initial")
        trained = context.build(spec, len(target.data.classes), initial, data_root=target.data_root)
        batches = context.image_batches(target.data, spec.batch_size, target.seed)
        # a whole model's step takes long enough on its own: one a call, so the budget is checked after each
        part, per_call = "model", 1
    _compile(trained, spec, label_smoothing=spec.regularization.label_smoothing)
    result = lr_range.run(
        trained, batches, job_rate=job_rate, part=part, budget=budget, num_it=num_it, per_call=per_call
    )
    return {**result, "start": "initial weights"}


def without_regularization(spec: JobSpec) -> JobSpec:
    reg = {"dropout": 0.0, "dense_dropout": None, "l2": 0.0, "l2_base": False, "augmentation": None}
    return spec.model_copy(
        update={
            "regularization": spec.regularization.model_copy(update={**reg, "label_smoothing": 0.0}),
            "optimizer": spec.optimizer.model_copy(update={"weight_decay": None}),
        }
    )


def probe_memorization(target: Target, budget: Budget, inputs: dict[str, Any]) -> dict[str, Any]:
    """A balanced subset, regularization off, the job's optimizer and rate, a fixed number of steps."""
    plain = without_regularization(target.spec)
    k = len(target.data.classes)
    idx = memorization.balanced_subset(
        target.data.train_set.labels,
        k,
        per_class=int(inputs.get("per_class", memorization.PER_CLASS)),
        seed=target.seed,
    )
    if target.head_only:
        trained, x = target.head(budget.stop, plain), target.features(budget.stop)[idx]
        y = np.eye(k, dtype="float32")[target.data.labels[idx]]
        per_call = steps.PER_CALL
    else:
        trained = target.model(plain)
        x, y = context.images(target.data, idx)
        per_call = 1
    _compile(trained, plain, label_smoothing=0.0)
    return memorization.run(
        trained,
        x,
        y,
        steps=int(inputs.get("steps", memorization.STEPS)),
        budget=budget,
        batch_size=plain.batch_size,
        per_call=per_call,
    )


# One entry: the linear probe and the label check of a job on one worker read the same out-of-fold probabilities.
_probabilities_cache: dict[tuple, linear.OutOfFold] = {}


def _probabilities(target: Target, budget: Budget) -> tuple[np.ndarray, linear.OutOfFold]:
    feats = target.features(budget.stop)
    if budget.stop.is_set():  # cancelled after the features: the fit across folds is not interruptible
        raise Stopped()
    labels = target.data.labels
    k = len(target.data.classes)
    key = (hashlib.sha256(feats.tobytes()).hexdigest(), hashlib.sha256(labels.tobytes()).hexdigest(), k, target.seed)
    if key not in _probabilities_cache:
        fitted = linear.out_of_fold(feats, labels, k, seed=target.seed)
        _probabilities_cache.clear()
        _probabilities_cache[key] = fitted
    return feats, _probabilities_cache[key]


def probe_linear(target: Target, budget: Budget, inputs: dict[str, Any]) -> dict[str, Any]:
    feats, fitted = _probabilities(target, budget)
    return linear.linear_probe(feats, target.data.labels, target.data.classes, seed=target.seed, fitted=fitted)


def probe_labels(target: Target, budget: Budget, inputs: dict[str, Any]) -> dict[str, Any]:
    feats, fitted = _probabilities(target, budget)
    return linear.label_check(
        feats, target.data.labels, target.data.classes, target.data.files, seed=target.seed, fitted=fitted
    )


PROBES = {
    "lr_range": probe_lr_range,
    "memorization": probe_memorization,
    "linear_probe": probe_linear,
    "label_check": probe_labels,
}


# --- the row's life ---------------------------------------------------------------------------------------------


class Watch(threading.Thread):
    """Renews the probe's lease and carries a cancel request (or a worker shutdown) to the running probe."""

    def __init__(self, probe_id: uuid.UUID, *, host: str, lease: float, poll: float, stop: threading.Event):
        super().__init__(name=f"probe-{probe_id}", daemon=True)
        self.probe_id, self.host, self.lease = probe_id, host, lease
        self.interval = min(poll, lease / 3)
        self.stop, self.cancelled, self.lost = stop, threading.Event(), threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        from worker.runner import shutting_down

        while not self._done.wait(self.interval):
            if shutting_down.is_set():
                self.stop.set()
            try:
                with session_scope() as s:
                    state = rows.renew(s, self.probe_id, worker_host=self.host, lease_seconds=self.lease)
            except Exception as exc:  # noqa: BLE001 - a database blip: the lease has slack
                log.warning("probe lease renewal failed", probe_id=str(self.probe_id), error=str(exc))
                continue
            if state is None:
                self.lost.set()
                self.stop.set()
            elif state:
                self.cancelled.set()
                self.stop.set()

    def close(self) -> None:
        self._done.set()


def run_probe(probe_id: str | uuid.UUID) -> str:
    """Returns how the probe ended for this worker (for logs); outcomes live in the database."""
    with structlog.contextvars.bound_contextvars(probe_id=str(probe_id)):
        return _run_probe(uuid.UUID(str(probe_id)))


def _run_probe(probe_id: uuid.UUID) -> str:
    from worker.runner import shutting_down, worker_host

    settings = get_settings()
    host = worker_host()
    with session_scope() as s:
        probe, why = rows.claim(
            s, probe_id, worker_host=host, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts
        )
        if probe is None:
            log.info("probe skipped", reason=why)
            return f"skipped: {why}"
        name, inputs, trigger = probe.name, dict(probe.inputs or {}), probe.trigger
        job = s.get(Job, probe.job_id)
        job_id, spec_raw, model_path = job.id, dict(job.spec), job.model_path
        verified = job.started_at is not None  # its training scanned and decoded every image already
        workdir = Path(job.artifacts_dir) if job.artifacts_dir else settings.artifacts_dir.resolve() / str(job.id)
    log.info("probe claimed", name=name, job_id=str(job_id))
    stop = threading.Event()
    watch = Watch(probe_id, host=host, lease=settings.lease_seconds, poll=settings.cancel_poll_seconds, stop=stop)
    watch.start()
    budget = Budget(float(inputs.get("budget_seconds", 120)), stop)
    t0 = time.perf_counter()
    status, result, error = JobStatus.succeeded, None, None
    try:
        spec = JobSpec.model_validate(spec_raw)
        data = context.load_data(spec, data_root=settings.data_root, verify=not verified)
        weights = context.latest_weights(model_path=model_path, workdir=workdir)
        target = Target(job_id, spec, data, weights, settings.data_root, workdir)
        result = PROBES[name](target, budget, inputs)
        result = {**_finite(result), "weights": weights.source, "seconds": time.perf_counter() - t0}
    except Stopped:
        status, error = JobStatus.cancelled, "cancelled by request"
    except (DataError, ModelError) as exc:
        status, error = JobStatus.failed, str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded on the probe; the worker keeps serving
        log.error("probe crashed", error=traceback.format_exc())
        status, error = JobStatus.failed, f"internal error: {type(exc).__name__}: {exc}"
    finally:
        watch.close()
    if watch.lost.is_set():
        return "lease lost: another worker owns the probe"
    if shutting_down.is_set() and not watch.cancelled.is_set():
        return _hand_back(probe_id, host)
    if watch.cancelled.is_set():
        status, error = JobStatus.cancelled, "cancelled by request"  # what it measured so far stays in `result`
    ended = _end(probe_id, host, status, result, error, time.perf_counter() - t0)
    after_probe_end(trigger)
    return ended


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: a non-finite number is stored as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@db_retry
def _end(probe_id: uuid.UUID, host: str, status: JobStatus, result, error, seconds: float) -> str:
    with session_scope() as s:
        ended = rows.finish(s, probe_id, status, worker_host=host, result=result, error=error, duration_seconds=seconds)
    log.info("probe ended", status=status.value, seconds=round(seconds, 2), recorded=ended, error=error)
    return status.value if ended else "ended, but the probe was no longer ours"


@db_retry
def _hand_back(probe_id: uuid.UUID, host: str) -> str:
    with session_scope() as s:
        return "released" if rows.release(s, probe_id, worker_host=host) else "released (no longer ours)"
