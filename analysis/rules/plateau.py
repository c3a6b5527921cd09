"""Plateau: Keras EarlyStopping replayed on the history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from analysis import remedies as R
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.view import View

Monitor = Literal["val_loss", "val_accuracy", "loss", "accuracy", "train_eval_loss", "train_eval_accuracy"]
SPEC_KEYS = ("monitor", "min_delta", "patience")


class PlateauParams(Params):
    monitor: Monitor = Field("val_loss", description="Metric to watch (Keras default val_loss).")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement (Keras default 0).")
    patience: int = Field(
        5,
        ge=0,
        description="Epochs without improvement before it fires. Keras' default 0 would flag any single flat epoch.",
    )
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: max for accuracies, min for losses.")
    baseline: float | None = Field(None, description="Improvements only reset the wait once they also beat this.")
    start_from_epoch: int = Field(0, ge=0, description="Epochs before this are ignored (warm-up).")
    follow_spec: bool = Field(
        True, description="Take monitor/min_delta/patience from the job's early_stopping callback unless set here."
    )


@dataclass
class Replay:
    best: float
    best_epoch: int | None = None
    wait: int = 0
    stop_now: bool = False  # the last epoch is one where EarlyStopping stops
    first_stop: int | None = None
    improvements: list[int] = field(default_factory=list)


def replay_early_stopping(
    epochs: list[int],
    values: list[float],
    mode: str,
    min_delta: float,
    patience: int,
    baseline: float | None = None,
    start_from_epoch: int = 0,
) -> Replay:
    """Keras `EarlyStopping.on_epoch_end`, epoch by epoch: min mode improves when current + min_delta < best,
    max mode when current - min_delta > best; a stop happens when wait >= patience on a non-improving epoch."""
    lower = mode == "min"
    best, best_epoch, wait, stop_now, first_stop, improvements = (
        (math.inf if lower else -math.inf),
        None,
        0,
        False,
        None,
        [],
    )
    # plain locals in the loop: this runs once per epoch of histories up to 10,000 epochs long
    for i, (epoch, current) in enumerate(zip(epochs, values)):
        stop_now = False
        if epoch < start_from_epoch:
            continue
        wait += 1
        if (current + min_delta < best) if lower else (current - min_delta > best):
            best, best_epoch = current, epoch
            improvements.append(epoch)
            if baseline is None or ((current + min_delta < baseline) if lower else (current - min_delta > baseline)):
                wait = 0
            continue
        if wait >= patience and i > 0:  # Keras' `epoch > 0`, by position so 1-based histories behave too
            stop_now = True
            if first_stop is None:
                first_stop = epoch
    return Replay(best, best_epoch, wait, stop_now, first_stop, improvements)


class Plateau(Rule):
    """The monitored metric has stopped improving, judged exactly as Keras EarlyStopping would.

    Reference: Keras EarlyStopping (keras-team/keras `keras/src/callbacks/early_stopping.py`).
    """

    id = "plateau"
    reference = "Keras EarlyStopping (keras/src/callbacks/early_stopping.py)"
    causes = ("plateau",)
    Params = PlateauParams

    def resolve(self, view: View, p: PlateauParams) -> PlateauParams:
        es = view.spec.early_stopping
        if not (p.follow_spec and es):
            return p
        return p.model_copy(update={k: es[k] for k in SPEC_KEYS if k not in p.model_fields_set})

    def min_epochs(self, p: PlateauParams) -> int:
        return max(2, p.start_from_epoch + p.patience + 1)

    def run(self, view: View, p: PlateauParams) -> list[Finding] | Abstention:
        return super().run(view, self.resolve(view, p))

    def check(self, view: View, p: PlateauParams) -> list[Finding] | Abstention:
        s = view.series(p.monitor, finite=False)  # as in Keras, a NaN epoch is simply not an improvement
        if not s:
            return self.abstain_missing(p.monitor)
        mode = p.mode if p.mode != "auto" else ("max" if "acc" in p.monitor else "min")
        r = replay_early_stopping(s.epochs, s.values, mode, p.min_delta, p.patience, p.baseline, p.start_from_epoch)
        if not r.stop_now or r.best_epoch is None:
            return []
        cuts = view.lr_cuts()
        cuts_after_best = [c for c in cuts if c > r.best_epoch]
        since = s.last_epoch - r.best_epoch
        lr_now = view.series("learning_rate").values[-1] if view.has("learning_rate") else None
        # A symptom, not a cause: kept at or below 0.5 so a causal rule that fires names the primary cause.
        confidence = clamp(0.4 + min(0.05, 0.01 * (r.wait - p.patience)) + (0.05 if cuts_after_best else 0.0), hi=0.5)
        cut_text = (
            f"; {len(cuts)} learning-rate cut(s) so far, {len(cuts_after_best)} since the best epoch"
            if cuts
            else "; no learning-rate cuts so far"
        )
        spec = view.spec
        return [
            Finding(
                rule=self.id,
                cause="plateau",
                confidence=confidence,
                summary=f"{p.monitor} has not improved by more than {p.min_delta:g} for {since} epochs "
                f"(best {r.best:.4g} at epoch {r.best_epoch}){cut_text}.",
                thresholds={**p.model_dump(), "mode": mode},
                observed={
                    "best": r.best,
                    "best_epoch": r.best_epoch,
                    "epochs_since_best": since,
                    "wait": r.wait,
                    "would_have_stopped_at": r.first_stop,
                    "lr_cuts": cuts,
                    "learning_rate": lr_now,
                    "last": s.last,
                },
                epochs=[e for e in s.epochs if e >= r.best_epoch],
                remedies=R.ranked(
                    R.add_reduce_lr_on_plateau(spec, p.monitor, max(2, p.patience // 2)) if not cuts else None,
                    R.add_early_stopping(spec, p.monitor, max(1, p.patience)),
                    R.lower_learning_rate(spec) if not cuts else None,
                ),
            )
        ]


RULE = Plateau()
