"""Label noise (suspected only): training accuracy capped below 1, then memorisation."""

from __future__ import annotations

from math import sqrt

from pydantic import Field

from analysis import remedies as R
from analysis.compare import ge, gt, le, lt, tol
from analysis.findings import Abstention, Finding, clamp
from analysis.rule import Params, Rule
from analysis.series import Series, max_gain
from analysis.stats import wilson
from analysis.view import View


class LabelNoiseParams(Params):
    train_cap: float = Field(
        0.9, gt=0, le=1, description="Inference-mode training accuracy stalled below this looks capped."
    )
    window: int = Field(5, ge=1, description="Epochs that make a stall.")
    min_gain: float = Field(0.01, gt=0, description="AutoTrainer slow convergence: gains below this are a stall.")
    max_gap: float = Field(0.05, ge=0, description="Train - val accuracy at or below this is 'no gap'.")
    above_chance: float = Field(
        0.2, ge=0, description="A cap must be at least this far above chance (1/K); at chance nothing was learnt."
    )
    memorise_gain: float = Field(
        0.05, gt=0, description="Training accuracy rise above an earlier capped stall that counts as memorising."
    )
    val_rise_factor: float = Field(1.05, gt=1, description="val_loss at least this multiple of its minimum.")
    val_above_train: float = Field(
        0.1, gt=0, description="UMLAUT: validation accuracy this far above inference-mode training accuracy…"
    )
    val_above_epochs: int = Field(3, ge=1, description="…on average over the latest this many epochs.")
    loss_still_falling: float = Field(
        0.05,
        gt=0,
        description="A training loss that fell by this fraction over the window is "
        "still learning: accuracy is not capped.",
    )
    learned: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="Validation must be above 1/K + learned × (1 − 1/K): a model at "
        "chance agrees with no labels at all.",
    )
    loss_below_train: float = Field(
        0.1, gt=0, lt=1, description="val_loss at least this fraction below train_eval_loss (the same penalty in both)…"
    )
    z: float = Field(
        2.0,
        ge=0,
        description="Validation beating training must exceed z standard errors of the difference (binomial on the "
        "validation and training-subset sizes).",
    )
    loss_z: float = Field(
        1.0,
        ge=0,
        description="val_loss below train_eval_loss must exceed this many relative standard errors (1/sqrt(n)).",
    )
    confirmed_noise_rate: float = Field(
        0.05, gt=0, lt=1, description="A label check (confident learning) estimating at least this noise confirms it."
    )
    loss_below_epochs: int = Field(
        3,
        ge=1,
        description="…on average over the latest this many epochs: the model fits clean "
        "held-out labels better than its own training labels.",
    )


def last_stall(values: list[float], window: int, min_gain: float, end: int) -> int | None:
    """Index where the latest run of `window` consecutive gains below `min_gain` ends, looking only before `end`. O(n)."""
    limit = min_gain - tol(min_gain)
    run, found = 0, None
    for i in range(1, min(end, len(values))):
        run = run + 1 if values[i] - values[i - 1] < limit else 0
        if run >= window:
            found = i
    return found


class LabelNoise(Rule):
    """Never more than a suspicion: a learning curve cannot tell noisy labels from a hard task.

    References: cleanlab (find_label_issues needs out-of-sample predicted probabilities; a loss curve
    cannot confirm label noise); AutoTrainer slow-convergence gain (0.01) for the stall; UMLAUT's
    suspicious-validation heuristic (val_acc > train_acc) for validation beating inference-mode training.
    """

    id = "label_noise"
    reference = "cleanlab find_label_issues (confirmation); AutoTrainer slow convergence (stall); UMLAUT val > train"
    causes = ("label_noise_suspected", "label_noise")
    Params = LabelNoiseParams

    def min_epochs(self, p: LabelNoiseParams) -> int:
        return p.window + 1

    def check(self, view: View, p: LabelNoiseParams) -> list[Finding] | Abstention:
        val_acc, val_loss = view.series("val_accuracy"), view.series("val_loss")
        honest = view.series("train_eval_accuracy")
        train = view.pick("train_eval_accuracy", "accuracy")
        if not val_acc or not train:
            return self.abstain_missing(
                *(["val_accuracy"] if not val_acc else []), *(["train_eval_accuracy or accuracy"] if not train else [])
            )
        check = view.probes.get("label_check")
        if check is not None:
            found = self._checked(view, check, val_acc, p)
            if found is not None:
                return found  # confirmed or cleared; otherwise the check was inconclusive: read the curves
        bar = view.chance_bar(p.learned)
        if bar is not None and (view.near_chance(p.learned, p.val_above_epochs) or not gt(val_acc.last, bar)):
            return []  # nothing learned: disagreeing with the training labels says nothing about them
        capped = self._capped(view, honest, val_acc, p) if honest else None
        memorised = self._memorised(train, val_loss, p) if val_loss else None
        inverted = self._val_above_train(view, honest, val_acc, p) if honest else None
        loss_inverted = self._val_loss_below_train(view, val_loss, p) if val_loss else None
        parts = {
            "capped": (capped, 0.4),
            "memorised": (memorised, 0.35),
            "inverted": (inverted, 0.6),
            "loss_inverted": (loss_inverted, 0.65),
        }
        fired = {name: weight for name, (part, weight) in parts.items() if part}
        if not fired:
            return []
        spec = view.spec
        confidence = max(fired.values()) + 0.1 * (len(fired) - 1)
        if spec.base_frozen and not (inverted or loss_inverted):
            confidence -= 0.1  # a frozen base caps accuracy by itself, which makes noisy labels a weaker explanation
        observed = {
            **(capped or {}),
            **(memorised or {}),
            **(inverted or {}),
            **(loss_inverted or {}),
            "signals": sorted(fired),
        }
        epochs = sorted({e for part in (capped, memorised, inverted, loss_inverted) if part for e in part["_epochs"]})
        observed.pop("_epochs", None)
        what = (
            ([f"inference-mode training accuracy capped at {capped['train_eval_accuracy']:.2f}"] if capped else [])
            + (["training accuracy climbing past its earlier cap while val_loss rises"] if memorised else [])
            + (
                [
                    f"the model agrees with the validation labels ({inverted['val_accuracy']:.2f}) far more than with "
                    f"the training labels ({inverted['train_eval_accuracy']:.2f})"
                ]
                if inverted
                else []
            )
            + (
                [
                    f"val_loss {loss_inverted['val_loss']:.3g} stays below the inference-mode training loss "
                    f"{loss_inverted['train_eval_loss']:.3g}"
                ]
                if loss_inverted
                else []
            )
        )
        return [
            Finding(
                rule=self.id,
                cause="label_noise_suspected",
                confidence=clamp(max(confidence, 0.2), hi=0.8),
                summary=f"Noisy labels suspected: {' and '.join(what)}; confirm with cleanlab before relabelling.",
                thresholds=p.model_dump(),
                observed=observed,
                epochs=epochs,
                remedies=R.ranked(
                    R.confirm_with_cleanlab(),
                    R.add_label_smoothing(spec),
                    R.add_early_stopping(spec) if memorised else None,
                ),
            )
        ]

    def _checked(self, view: View, check, val_acc: Series, p: LabelNoiseParams) -> list[Finding] | None:
        """Confident learning measured the noise: cleared below `confirmed_noise_rate`; confirmed above it only when
        the job's own model agrees with the validation labels clearly more than the check's classifier could agree
        with the training labels (1 − noise rate). Confident learning calls every confident disagreement a wrong
        label, so features too weak to separate the classes read as noise as well; a job that does better on held-out
        images than the labels would allow says the features were not the limit. None: inconclusive."""
        if not ge(check.noise_rate, p.confirmed_noise_rate):
            return []
        n_val, n_train = view.sample_size("val_accuracy"), check.images or view.sample_size("accuracy")
        val = wilson(val_acc.last * n_val, n_val) if n_val else None
        agree = wilson((1 - check.noise_rate) * n_train, n_train) if n_train else None
        if val is None or agree is None or not gt(val[0], agree[1]):
            return None
        spec = view.spec
        return [
            Finding(
                rule=self.id,
                cause="label_noise",
                confidence=clamp(0.9),
                summary=f"Label noise confirmed: confident learning estimates {check.noise_rate:.0%} of the training "
                f"labels wrong"
                + (f" ({check.suspects} suspect images)" if check.suspects is not None else "")
                + ", and the "
                f"model agrees with the validation labels ({val_acc.last:.2f}) more than a classifier could agree with "
                f"the training labels ({1 - check.noise_rate:.2f}).",
                thresholds=p.model_dump(),
                observed={
                    "label_check": check.model_dump(),
                    "signals": ["label_check"],
                    "val_accuracy": round(val_acc.last, 4),
                    "val_accuracy_interval": [round(v, 4) for v in val],
                    "train_label_agreement_interval": [round(v, 4) for v in agree],
                },
                epochs=[],
                remedies=R.ranked(R.add_label_smoothing(spec), R.add_early_stopping(spec)),
            )
        ]

    def _capped(self, view: View, honest: Series, val_acc: Series, p: LabelNoiseParams) -> dict | None:
        k = p.window + 1
        level = honest.last
        stalled = lt(max_gain(honest.tail(k)), p.min_gain) and lt(max_gain(val_acc.tail(k)), p.min_gain)
        loss = view.series("train_eval_loss").tail(k)
        if len(loss) == k and loss[0] > 0 and ge((loss[0] - loss[-1]) / loss[0], p.loss_still_falling):
            stalled = False  # accuracy flat but the loss still falls: the model is still learning, not capped
        _, ta, va = view.paired(honest, val_acc)
        gap = (ta[-1] - va[-1]) if ta else 1.0
        chance = 1 / view.num_classes if view.num_classes else 0.0
        if not (stalled and lt(level, p.train_cap) and ge(level, chance + p.above_chance) and le(gap, p.max_gap)):
            return None
        # If a fraction f of labels is wrong, a model that does not memorise them tops out near 1 - f.
        return {
            "train_eval_accuracy": level,
            "val_accuracy": val_acc.last,
            "accuracy_gap": round(gap, 4),
            "implied_noisy_fraction": round(1 - level, 3),
            "_epochs": honest.epochs[-k:],
        }

    def _val_above_train(self, view: View, honest: Series, val_acc: Series, p: LabelNoiseParams) -> dict | None:
        """Training labels the model contradicts while it gets clean validation labels right: noisy training labels
        (or a train/validation mismatch). UMLAUT flags val_acc > train_acc as suspicious for the same reason."""
        ep, ta, va = view.paired(honest, val_acc)
        n = p.val_above_epochs
        if len(ep) < n:
            return None
        mean = sum(v - t for t, v in zip(ta[-n:], va[-n:])) / n  # a mean: one noisy epoch neither makes nor breaks it
        # on a small validation set a few easy images make validation beat training by chance
        noise = p.z * view.accuracy_gap_se(ta[-1], va[-1])
        if not ge(mean, max(p.val_above_train, noise)):
            return None
        return {
            "train_eval_accuracy": ta[-1],
            "val_accuracy": va[-1],
            "val_minus_train_accuracy": round(mean, 4),
            "_epochs": ep[-n:],
        }

    def _val_loss_below_train(self, view: View, val_loss: Series, p: LabelNoiseParams) -> dict | None:
        """The held-out loss below the training loss, both in inference mode with the same penalty: the model
        contradicts its training labels more than the validation labels (UMLAUT's val > train, on the loss)."""
        train = view.series("train_eval_loss")
        if not train:
            return None
        ep, tl, vl = view.paired(train, val_loss)
        n = p.loss_below_epochs
        if len(ep) < n or not all(t > 0 for t in tl[-n:]):
            return None
        mean = sum((t - v) / t for t, v in zip(tl[-n:], vl[-n:])) / n
        # a mean cross-entropy over n images has a relative standard error near 1/sqrt(n) (per-image losses vary
        # about as much as their mean)
        n_val = view.sample_size("val_accuracy")
        noise = p.loss_z / sqrt(n_val) if n_val else 0.0
        if not ge(mean, max(p.loss_below_train, noise)):
            return None
        return {
            "train_eval_loss": tl[-1],
            "val_loss": vl[-1],
            "val_loss_below_train": round(mean, 4),
            "_epochs": ep[-n:],
        }

    def _memorised(self, train: Series, val_loss: Series, p: LabelNoiseParams) -> dict | None:
        end = len(train) - p.window  # the cap must come before the latest window
        stall = last_stall(train.values, p.window, p.min_gain, end)
        if stall is None or not lt(train.values[stall], p.train_cap):
            return None
        level = train.values[stall]
        i_min = val_loss.argmin()
        rose = ge(train.last, level + p.memorise_gain)
        val_up = i_min < len(val_loss) - 1 and ge(val_loss.last, p.val_rise_factor * val_loss.values[i_min])
        if not (rose and val_up):
            return None
        return {
            "capped_train_accuracy": level,
            "capped_until_epoch": train.epochs[stall],
            "train_accuracy": train.last,
            "val_loss_min": val_loss.values[i_min],
            "val_loss_last": val_loss.last,
            "_epochs": [e for e in train.epochs if e >= train.epochs[stall]],
        }


RULE = LabelNoise()
