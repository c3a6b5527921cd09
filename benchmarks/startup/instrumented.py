"""The Plateau Celery app with timing hooks, for `benchmarks.startup.run`; nothing else imports it.

    celery -A benchmarks.startup.instrumented worker -P solo -c 1 -Q QUEUE ...

Exactly the worker `tests/procs.py:start_worker` starts (`worker.celery_app`'s app, tasks and
signals, same options); importing this module additionally wraps a few functions the training
code looks up at call time, so they record wall-clock marks (`time.time()`, comparable with the
API's timestamps on the same machine). Behaviour is unchanged: every wrapper calls the original.
When the training function returns, the marks of that job are appended as one JSON line to the
file named by `PLATEAU_BENCH_MARKS`.

Marks, in the order the training code reaches them:
  train_enter       worker.training.fit.train called (the job was claimed and its bookkeeping done)
  keras_imported    `import keras` done (TensorFlow import: only the first job of a process pays it)
  scan_start        first dataset folder scan begins (after device setup and seeding)
  scan_end          last folder scan ends
  model_start       build_model called (after class counts are written and pre-training checks)
  datasets_start    first make_dataset call (the model is built and compiled)
  probe_start       datasets built; the evaluation probe pulls its fixed batch through the pipeline
  probe_end         probe ready; callbacks are set up next
  fit_called        keras.Model.fit called
  first_batch_begin the first training batch begins (on_train_batch_begin(0))
  first_batch_end   the first training batch has run (on_train_batch_end(0))
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import wraps

from worker.celery_app import app  # noqa: F401  (the Celery app this worker runs)
import worker.tasks  # noqa: F401  (its task and signals, as `include` would load them)

_marks: dict[str, float] = {}
_lock = threading.Lock()


def mark(name: str, *, first: bool = True) -> None:
    """Record `name` now; with first=True a later call does not move it."""
    with _lock:
        if not (first and name in _marks):
            _marks[name] = time.time()


def _wrap(module, attr: str, before: str | None = None, after: str | None = None, *,
          first_before: bool = True, first_after: bool = False) -> None:
    original = getattr(module, attr)

    @wraps(original)
    def wrapper(*args, **kwargs):
        if before:
            mark(before, first=first_before)
        try:
            return original(*args, **kwargs)
        finally:
            if after:
                mark(after, first=first_after)

    setattr(module, attr, wrapper)


def install() -> None:
    import worker.training.fit as fit
    import worker.training.model as model
    import worker.training.pipeline as pipeline
    import worker.training.scan as scan

    original_train = fit.train

    @wraps(original_train)
    def train(spec, *, data_root, workdir, sink, stop, release=None, history=None):
        with _lock:
            _marks.clear()
        mark("train_enter")
        import keras  # what fit.train does first; timed apart so TensorFlow's import is not counted as data time

        mark("keras_imported")
        _patch_keras(keras)
        try:
            return original_train(spec, data_root=data_root, workdir=workdir, sink=sink, stop=stop,
                                  release=release, history=history)
        finally:
            _flush(workdir.name)

    fit.train = train
    _wrap(scan, "scan", "scan_start", "scan_end")
    _wrap(scan, "split", "scan_start", "scan_end")
    _wrap(model, "build_model", "model_start")
    _wrap(pipeline, "make_dataset", "datasets_start", "probe_start")


_patched = False


def _patch_keras(keras) -> None:
    global _patched
    if _patched:
        return
    _patched = True
    import worker.training.callbacks as cb

    original_fit = keras.Model.fit

    @wraps(original_fit)
    def fit(self, *args, **kwargs):
        mark("fit_called")
        return original_fit(self, *args, **kwargs)

    keras.Model.fit = fit

    original_probe_init = cb.EvalProbe.__init__

    @wraps(original_probe_init)
    def probe_init(self, *args, **kwargs):
        mark("probe_start")
        try:
            original_probe_init(self, *args, **kwargs)
        finally:
            mark("probe_end")

    cb.EvalProbe.__init__ = probe_init

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
        line = json.dumps({"job_id": job_id, "pid": os.getpid(), "marks": dict(_marks)})
    with open(path, "a") as fh:
        fh.write(line + "\n")


install()
