"""The Plateau Celery app with timing hooks, for `benchmarks.startup.run`; nothing else imports it.

    celery -A benchmarks.startup.instrumented worker -P solo -c 1 -Q QUEUE ...

Exactly the worker `tests/procs.py:start_worker` starts (`worker.celery_app`'s app, its task and
signals, the same options); importing this module also wraps a few functions that the training
code looks up when a job runs, so they record wall-clock times (`time.time()`, comparable with the
API's timestamps on the same machine). Every wrapper calls the original with the same arguments
and returns its result: behaviour is unchanged. TensorFlow is still imported where the stock worker
imports it, inside the first job. When the training function returns, the job's timings are
appended as one JSON line to the file named by `PLATEAU_BENCH_MARKS`.

Marks (first time reached):
  train_enter        worker.training.fit.train called (the job was claimed and its bookkeeping done)
  keras_imported     `import keras` done (TensorFlow's import: only the first job of a process pays it)
  fit_called         keras.Model.fit called
  first_batch_begin  on_train_batch_begin(0)
  first_batch_end    on_train_batch_end(0): the first training batch has run
Durations (seconds, summed over calls):
  scan               dataset folder scans and splits (every file opened and checked)
  build_model        Inception-V3 + head built
  split_model        extractor/head split (cached-features path only)
  compile            keras Model.compile
  make_dataset       tf.data image pipelines built (lazy: no image is read here)
  pin_base           random base weights saved so a resumed job sees the same base (cached-features path)
  extract            features computed: every image read, decoded and passed through the frozen base once
  feature_dataset    tf.data pipelines over the cached features built
  probe              evaluation probe set up (pulls its fixed batch through the pipeline)
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import wraps

import worker.tasks  # noqa: F401  (its task and signals, as the app's `include` loads them)
from worker.celery_app import app  # noqa: F401  (the Celery app this worker runs)

_marks: dict[str, float] = {}
_durations: dict[str, float] = {}
_lock = threading.Lock()


def mark(name: str) -> None:
    with _lock:
        _marks.setdefault(name, time.time())


def _timed(owner, attr: str, label: str) -> None:
    """Replace owner.attr by a wrapper that adds its wall time to `label`; a missing attribute is skipped."""
    original = getattr(owner, attr, None)
    if original is None:
        return

    @wraps(original)
    def wrapper(*args, **kwargs):
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            with _lock:
                _durations[label] = _durations.get(label, 0.0) + time.time() - start

    setattr(owner, attr, wrapper)


def install() -> None:
    """Wrap the training entry point now, the TensorFlow-side functions when a job first imports Keras."""
    import worker.training.fit as fit  # light: it imports TensorFlow only when train() runs

    original_train = fit.train

    @wraps(original_train)
    def train(*args, **kwargs):
        with _lock:
            _marks.clear()
            _durations.clear()
        mark("train_enter")
        import keras  # what fit.train does first; timed apart so TensorFlow's import is a phase of its own

        mark("keras_imported")
        _patch_training(keras)
        try:
            return original_train(*args, **kwargs)
        finally:
            _flush(kwargs["workdir"].name)

    fit.train = train


_patched = False


def _patch_training(keras) -> None:
    global _patched
    if _patched:
        return
    _patched = True
    import importlib

    def module(name: str):
        try:
            return importlib.import_module(name)
        except ImportError:
            return None

    scan, model, pipeline = (module(f"worker.training.{m}") for m in ("scan", "model", "pipeline"))
    features, cb = module("worker.training.features"), module("worker.training.callbacks")
    _timed(scan, "scan", "scan")
    _timed(scan, "split", "scan")
    _timed(model, "build_model", "build_model")
    _timed(pipeline, "make_dataset", "make_dataset")
    if features is not None:
        _timed(features, "split_model", "split_model")
        _timed(features, "pin_base", "pin_base")
        _timed(features, "extract", "extract")
        _timed(features, "feature_dataset", "feature_dataset")
    _timed(keras.Model, "compile", "compile")
    _timed(cb.EvalProbe, "__init__", "probe")

    original_fit = keras.Model.fit

    @wraps(original_fit)
    def fit(self, *args, **kwargs):
        mark("fit_called")
        return original_fit(self, *args, **kwargs)

    keras.Model.fit = fit

    class TimedBatchLossStats(cb.BatchLossStats):
        def on_train_batch_begin(self, batch, logs=None):
            mark("first_batch_begin")
            return super().on_train_batch_begin(batch, logs)

        def on_train_batch_end(self, batch, logs=None):
            mark("first_batch_end")
            return super().on_train_batch_end(batch, logs)

    cb.BatchLossStats = TimedBatchLossStats


def _flush(job_id: str) -> None:
    path = os.environ.get("PLATEAU_BENCH_MARKS")
    if not path:
        return
    with _lock:
        line = json.dumps({"job_id": job_id, "pid": os.getpid(), "marks": dict(_marks), "durations": dict(_durations)})
    with open(path, "a") as fh:
        fh.write(line + "\n")


install()
