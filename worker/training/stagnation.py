"""The analysis, run inside training: before the first step on class counts, and after every epoch."""

from __future__ import annotations

from typing import Any

import keras

import analysis
from contract.lr_cuts import cut_epochs
from contract.spec import JobSpec
from worker.training.callbacks import epoch_row
from worker.training.sink import Sink


def context(spec: JobSpec, counts: dict[str, dict[str, int]], lr_cuts: list[int]) -> analysis.JobContext:
    return analysis.JobContext(
        spec=spec.model_dump(mode="json"),
        class_counts_train=counts.get("train"),
        class_counts_val=counts.get("val"),
        planned_epochs=spec.epochs,
        lr_reductions=lr_cuts,
        status="running",
    )


def check_before_training(spec: JobSpec, counts: dict[str, dict[str, int]], sink: Sink) -> list[analysis.Finding]:
    """A severe class imbalance is known before any GPU time is spent: record it at once."""
    found = analysis.diagnose([], context(spec, counts, []), rules=["class_imbalance"])
    for finding in found.findings:
        sink.event("finding", f"before training: {finding.summary}", finding.model_dump(mode="json"))
    return found.findings


def lr_cuts(rows: list[dict[str, Any]]) -> list[int]:
    return cut_epochs([r["epoch"] for r in rows], [r.get("learning_rate") for r in rows])


class EpochDiagnosis(keras.callbacks.Callback):
    """Diagnoses the job after every epoch (milliseconds) from the epoch's `logs`.

    Records a `finding` event when the primary cause first appears, changes or clears, and, when the spec's
    `on_stagnation.action` is "stop", stops training on a finding of a chosen rule at or above
    `on_stagnation.min_confidence`, from `after_epochs` finished epochs on.
    """

    def __init__(
        self, spec: JobSpec, counts: dict[str, dict[str, int]], sink: Sink, history: list[dict[str, Any]] | None = None
    ):
        super().__init__()
        self.spec, self.counts, self.sink = spec, counts, sink
        self.rows: list[dict[str, Any]] = list(history or [])  # earlier attempts' epochs, as recorded
        self.policy = spec.on_stagnation
        self.stopped_by: analysis.Finding | None = None
        self._cause: str | None = None
        self._stall_reported = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = epoch_row(epoch, logs or {})
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        history = [analysis.EpochRecord.model_validate(r) for r in self.rows]
        ctx = context(self.spec, self.counts, lr_cuts(self.rows))
        found = analysis.diagnose(history, ctx)
        self._report(found, row["epoch"])
        self._maybe_probe(found, row["epoch"])
        self._maybe_stop(found, len(history))

    def _report(self, found: analysis.Diagnosis, epoch: int) -> None:
        cause = found.primary_cause
        if cause == self._cause:
            return
        if cause is None:
            self.sink.event(
                "finding",
                f"epoch {epoch}: {self._cause.replace('_', ' ')} no longer found ({found.verdict})",
                {"epoch": epoch, "cleared": self._cause, "verdict": found.verdict},
            )
        else:
            top = found.findings[0]
            self.sink.event(
                "finding",
                f"epoch {epoch}: {top.summary}",
                {**top.model_dump(mode="json"), "epoch": epoch, "verdict": found.verdict, "previous": self._cause},
            )
        self._cause = cause

    def _maybe_probe(self, found: analysis.Diagnosis, epoch: int) -> None:
        """The first stall asks for the spec's probes; they run as their own tasks, never inside this loop."""
        diagnosis = self.spec.diagnosis
        if self._stall_reported or found.verdict != "stagnating" or diagnosis is None or not diagnosis.names():
            return
        self._stall_reported = True
        stalled = getattr(self.sink, "stalled", None)  # sinks without probes (tests, benchmarks) skip this
        if stalled is not None:
            stalled(epoch, diagnosis.names(), diagnosis.budget_seconds)

    def _maybe_stop(self, found: analysis.Diagnosis, epochs: int) -> None:
        policy = self.policy
        if policy is None or policy.action != "stop" or epochs < policy.after_epochs:
            return
        # rules run independently: the chosen rules' findings are those of the full diagnosis
        confident = [
            f
            for f in found.findings
            if (policy.rules is None or f.rule in policy.rules) and f.confidence >= policy.min_confidence
        ]
        if confident:
            self.stopped_by = confident[0]
            self.sink.event(
                "finding",
                f"on_stagnation stopped the job: {self.stopped_by.summary}",
                self.stopped_by.model_dump(mode="json"),
            )
            self.model.stop_training = True

    def stop_reason(self) -> str | None:
        f = self.stopped_by
        return None if f is None else f"on_stagnation: {f.rule} found {f.cause} ({f.summary})"
