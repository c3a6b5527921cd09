"""Learning rate too high: non-finite or exploding loss, oscillating accuracy, or oversized updates."""

from __future__ import annotations

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, gt
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.series import count_swings, is_finite
from analysis.view import View

LOSSES = ("loss", "val_loss", "train_eval_loss")
SIGNALS = LOSSES + ("accuracy", "val_accuracy", "update_ratio_head", "update_ratio_base", "nonfinite_batches")


class LrTooHighParams(Params):
    explode_loss: float = Field(1e5, gt=0, description="AutoTrainer: loss or val_loss at or above this has exploded.")
    rise_factor: float = Field(
        2.0, gt=1, description="Training loss at or above this multiple of its minimum is diverging…"
    )
    rise_min_abs: float = Field(
        0.1, ge=0, description="…and at least this much above it, so noise near zero loss does not count."
    )
    osc_amplitude: float = Field(0.03, gt=0, description="AutoTrainer: a local max/min pair this far apart is a swing.")
    osc_rate: float = Field(0.2, gt=0, description="AutoTrainer: oscillating when swings >= osc_rate × epochs.")
    min_osc_epochs: int = Field(5, ge=3, description="Fewer accuracy values than this are not judged for oscillation.")
    update_ratio_high: float = Field(
        0.1,
        gt=0,
        description="DeepDiagnosis: a step ‖ΔW‖/‖W‖ above this is too large; supporting evidence, it does not fire alone.",
    )
    start_factor: float = Field(
        5.0,
        gt=1,
        description="A data loss (penalty excluded) at or above this multiple of chance "
        "level ln K in the first epochs: the first steps threw the model far off.",
    )
    start_epochs: int = Field(2, ge=1, description="How many first epochs the start_factor check looks at.")
    spike_factor: float = Field(
        3.0, gt=1, description="val_loss at or above this multiple of its first value is a spike…"
    )
    spike_min_abs: float = Field(1.0, ge=0, description="…and at least this much above it.")
    range_factor: float = Field(
        3.0,
        gt=1,
        description="With a learning-rate range test: a rate at least this multiple of its suggestion (or above its "
        "usable range) is too high; below it the rate is cleared.",
    )
    nonfinite_memory: int = Field(
        3,
        ge=1,
        description="A non-finite batch or epoch is an event that ages: it counts while it lies within the latest "
        "this many epochs, or while the loss has not come back below where it was before it.",
    )


class LrTooHigh(Rule):
    """The step is too large for the loss surface: a strong signal (non-finite or exploding loss, rising training loss,
    a val_loss spike) fires; oscillation and large update ratios fire only on a run that also learns poorly; more
    signals add confidence.

    References: AutoTrainer (utils/monitor.py) nan_loss (NaN/inf or ≥ 1e5) and ol_judge oscillation
    (amplitude 0.03, rate 0.2) with its repairs (utils/repair.py: lower LR, Adam, ReduceLR, batch size);
    DeepDiagnosis (callback/callbacks.py) update-ratio upper bound 0.1. The training-loss rise
    (2× its minimum) has no public threshold; it is Plateau's own.
    """

    id = "lr_too_high"
    reference = "AutoTrainer nan_loss/unstable (utils/monitor.py, utils/repair.py); DeepDiagnosis update ratio"
    causes = ("learning_rate_too_high", "learning_rate_too_high_after_unfreezing")
    Params = LrTooHighParams

    def min_epochs(self, p: LrTooHighParams) -> int:
        return 1

    def check(self, view: View, p: LrTooHighParams) -> list[Finding] | Abstention:
        if not any(view.has(n) or view.series(n, finite=False) for n in SIGNALS):
            return self.abstain_missing("loss or val_loss", "accuracy or val_accuracy", "update_ratio_head")
        signals: dict[str, float] = {}  # signal → confidence it alone gives
        observed: dict = {}
        epochs: set[int] = set()
        diverged = self._nonfinite(view, p, signals, observed, epochs)
        diverged |= self._explosion(view, p, signals, observed, epochs)
        self._oscillation(view, p, signals, observed, epochs)
        self._val_spike(view, p, signals, observed, epochs)
        self._wild_start(view, p, signals, observed, epochs)
        self._update_ratio(view, p, signals, observed, epochs)
        spec = view.spec
        probe = view.probes.get("lr_range")
        if probe is not None:
            if not self._above_range(spec.lr, probe, p):
                return []  # the range test measured this rate as usable: the symptoms have another cause
            signals["above_range_test"] = 0.8  # measured: curves alone cannot tell "fine" from "could be better"
        weak = {k for k in signals if k.startswith("oscillation") or k == "large_update_ratio"}
        if not signals or (set(signals) == weak and not self._poor(view)):
            return []  # swings and large steps on a run that learns well are noise, not a diagnosis
        confidence = max(signals.values()) + 0.05 * (len(signals) - 1)
        oscillating = any(k.startswith("oscillation") for k in signals)
        observed["signals"] = sorted(signals)
        what = ", ".join(s.replace("_", " ") for s in sorted(signals))
        ratios = [max(view.series(n).values) for n in ("update_ratio_head", "update_ratio_base") if view.has(n)]
        factor = probe.suggested_lr / spec.lr if probe else R.step_factor(max(ratios, default=None), 0.01, 0.1, 0.1)
        lower = R.lower_learning_rate(spec, factor)
        if probe is not None:
            observed["lr_range"] = probe.model_dump()
            what += f"; the range test finds the loss falls fastest near {probe.suggested_lr:.2g}"
        if not spec.base_frozen and spec.weights is not None:
            # Keras transfer-learning guide: a pre-trained base unfrozen at a head's learning rate loses its features
            cause, summary = (
                "learning_rate_too_high_after_unfreezing",
                f"Learning rate {spec.lr:g} is too high for a pre-trained base unfrozen from "
                f"{spec.trainable!r}: {what}.",
            )
            remedies = R.ranked(R.unfreeze_fewer_at_low_lr(spec), lower)
        else:
            cause, summary = "learning_rate_too_high", f"Learning rate {spec.lr:g} looks too high: {what}."
            remedies = R.ranked(
                lower,
                R.switch_to_adam(spec),
                R.add_reduce_lr_on_plateau(spec) if oscillating else None,
                R.increase_batch_size(spec) if oscillating else None,
            )
        return [
            Finding(
                rule=self.id,
                cause=cause,
                confidence=clamp(confidence),
                diverging=diverged,
                summary=summary,
                thresholds=p.model_dump(),
                observed=observed,
                epochs=sorted(epochs),
                remedies=remedies,
            )
        ]

    @staticmethod
    def _above_range(lr: float, probe, p: LrTooHighParams) -> bool:
        """The job's rate lies above the range test's usable range; for a record without one, `range_factor` × its
        suggestion or more. A rate inside the measured range is usable however far it is from the steepest point:
        the range test's own verdict, not a factor, decides."""
        if probe.max_lr is not None:
            return gt(lr, probe.max_lr)
        return ge(lr, p.range_factor * probe.suggested_lr)

    @staticmethod
    def _poor(view: View) -> bool:
        """Validation accuracy below AutoTrainer's not_converge bar, 0.7, taken relative to chance for K classes
        (1/K + 0.55 × (1 − 1/K)): a large step that also learns well is fine."""
        val = view.series("val_accuracy")
        # unknown counts as poor: weak signals then stand on their own
        return not val or max(val.values) < view.low_accuracy_bar(0.55, 0.7)

    def _wild_start(self, view: View, p: LrTooHighParams, signals: dict, observed: dict, epochs: set) -> None:
        found = view.wild_start(p.start_factor, p.start_epochs)
        if found:
            signals["wild_start"] = 0.75
            observed.update(found)
            epochs.add(found["start_loss_epoch"])

    def _val_spike(self, view: View, p: LrTooHighParams, signals: dict, observed: dict, epochs: set) -> None:
        """val_loss jumps far above where it started: the step threw the model out of its basin."""
        s = view.series("val_loss")
        if len(s) < 2 or s.values[0] <= 0:
            return
        peak = max(s.values[1:])
        if self._overconfident(view):
            return  # val_loss rising while training keeps fitting and accuracy holds: overfitting's signature
        if ge(peak, p.spike_factor * s.values[0]) and ge(peak - s.values[0], p.spike_min_abs):
            signals["val_loss_spike"] = 0.7
            at = s.epochs[1 + s.values[1:].index(peak)]
            observed.update(val_loss_first=s.values[0], val_loss_peak=peak, val_loss_peak_epoch=at)
            epochs.add(at)

    @staticmethod
    def _recovered(view: View, last_bad: int, memory: int) -> bool:
        """The latest non-finite epoch is older than `nonfinite_memory` epochs and the finite training loss is now
        below its value before the event (or its first value): a one-off that training left behind."""
        later = [e for e in view.epochs if e > last_bad]
        if len(later) < memory:
            return False
        loss = view.pick("loss", "train_eval_loss")
        if not loss:
            return True
        before = [v for e, v in zip(loss.epochs, loss.values) if e < last_bad] or loss.values[:1]
        return loss.last_epoch > last_bad and loss.last < before[-1]

    @staticmethod
    def _overconfident(view: View) -> bool:
        """The training loss ended below where it started and validation accuracy ended within binomial noise of its
        best: the model grows confident on what it fits, it was not thrown out of its basin."""
        train, val_acc = view.pick("train_eval_loss", "loss"), view.series("val_accuracy")
        if not train or len(train) < 2 or not val_acc:
            return False
        best = max(val_acc.values)
        return train.last < train.values[0] and val_acc.last >= best - view.noise("val_accuracy", best, 0.02)

    def _nonfinite(self, view: View, p: LrTooHighParams, signals: dict, observed: dict, epochs: set) -> bool:
        bad = []
        for name in LOSSES:
            raw = view.series(name, finite=False)
            if len(raw) != len(view.series(name)):  # cheap test first: most histories are all finite
                bad += [e for e, v in zip(raw.epochs, raw.values) if not is_finite(v)]
        nb = view.series("nonfinite_batches")
        if sum(nb.values):
            bad += [e for e, v in zip(nb.epochs, nb.values) if v > 0]
        if not bad:
            return False
        if self._recovered(view, max(bad), p.nonfinite_memory):
            observed["recovered_from_non_finite_epoch"] = max(bad)
            return False
        signals["non_finite_loss"] = 0.9
        observed["first_non_finite_epoch"] = min(bad)
        epochs.update(bad)
        return True

    def _explosion(self, view: View, p: LrTooHighParams, signals: dict, observed: dict, epochs: set) -> bool:
        diverged = False
        for name in ("loss", "val_loss"):
            s = view.series(name)
            if s and ge(s.last, p.explode_loss):
                # val_loss alone exploding while training is fine points at BatchNorm as much as at the LR
                signals[f"{name}_exploded"] = 0.85 if name == "loss" else 0.6
                observed[f"{name}_last"] = s.last
                epochs.add(s.last_epoch)
                diverged = True
        s = view.pick("loss", "train_eval_loss")
        if s and len(s) >= 2:
            i = s.argmin()
            lo = s.values[i]
            if i < len(s) - 1 and ge(s.last, p.rise_factor * lo) and ge(s.last - lo, p.rise_min_abs):
                signals["training_loss_rising"] = 0.7
                observed.update(train_loss_min=lo, train_loss_min_epoch=s.epochs[i], train_loss_last=s.last)
                epochs.update(e for e in s.epochs if e > s.epochs[i])
                diverged = True
        return diverged

    def _oscillation(self, view: View, p: LrTooHighParams, signals: dict, observed: dict, epochs: set) -> None:
        for name in ("accuracy", "val_accuracy"):
            s = view.series(name)
            if len(s) < p.min_osc_epochs:
                continue
            # a swing must be more than sampling noise on this many images
            swings = count_swings(s.values, view.noise(name, sum(s.values) / len(s), p.osc_amplitude))
            observed[f"{name}_swings"] = swings
            if ge(swings, p.osc_rate * len(s)):
                signals[f"oscillation_{name}"] = 0.55
                epochs.update(s.epochs)

    def _update_ratio(self, view: View, p: LrTooHighParams, signals: dict, observed: dict, epochs: set) -> None:
        for name in ("update_ratio_head", "update_ratio_base"):
            s = view.series(name)
            if s and gt(max(s.values), p.update_ratio_high):
                signals["large_update_ratio"] = 0.35
                observed[name] = max(s.values)
                epochs.add(s.epochs[s.values.index(max(s.values))])


RULE = LrTooHigh()
