"""The analysis, run inside training: before the first step on class counts, and after each epoch when asked."""

from __future__ import annotations

from typing import Any

import keras

import analysis
from models.spec import JobSpec
from worker.training.sink import Sink


def context(spec: JobSpec, counts: dict[str, dict[str, int]], lr_cuts: list[int]) -> analysis.JobContext:
    return analysis.JobContext(spec=spec.model_dump(mode="json"), class_counts_train=counts.get("train"),
                               class_counts_val=counts.get("val"), planned_epochs=spec.epochs, lr_reductions=lr_cuts)


def check_before_training(spec: JobSpec, counts: dict[str, dict[str, int]], sink: Sink) -> list[analysis.Finding]:
    """A severe class imbalance is known before any GPU time is spent: record it at once."""
    found = analysis.diagnose([], context(spec, counts, []), rules=["class_imbalance"])
    for finding in found.findings:
        sink.event("finding", f"before training: {finding.summary}", finding.model_dump(mode="json"))
    return found.findings


class StopOnStagnation(keras.callbacks.Callback):
    """Runs the chosen rules after each epoch (from `after_epochs` on) and stops training on the first finding."""

    def __init__(self, spec: JobSpec, counts: dict[str, dict[str, int]], sink: Sink, recorder: Any):
        super().__init__()
        self.spec, self.counts, self.sink, self.recorder = spec, counts, sink, recorder
        self.policy = spec.on_stagnation
        self.stopped_by: analysis.Finding | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rows = self.recorder.rows  # EpochRecorder runs first, so this epoch is in
        if self.policy is None or self.policy.action != "stop" or len(rows) < self.policy.after_epochs:
            return
        cuts = [r["epoch"] for prev, r in zip(rows, rows[1:])
                if r.get("learning_rate") and prev.get("learning_rate") and r["learning_rate"] < prev["learning_rate"]]
        history = [analysis.EpochRecord.model_validate(r) for r in rows]
        found = analysis.diagnose(history, context(self.spec, self.counts, cuts), rules=self.policy.rules)
        if found.findings:
            self.stopped_by = found.findings[0]
            self.sink.event("finding", f"on_stagnation stopped the job: {self.stopped_by.summary}",
                            self.stopped_by.model_dump(mode="json"))
            self.model.stop_training = True

    def stop_reason(self) -> str | None:
        f = self.stopped_by
        return None if f is None else f"on_stagnation: {f.rule} found {f.cause} ({f.summary})"
