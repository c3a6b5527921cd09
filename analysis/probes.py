"""Results of the worker's probes, as inputs to the rules next to the epoch records.

The worker runs short experiments on a job's own data (a learning-rate range test, a memorization probe, a
linear probe of the base's features, a label check by confident learning) and records each result; the
analysis reads them from `JobContext.probes` keyed by probe name. Plain pydantic, so tests and benchmarks can
pass them without a database. Unknown keys are ignored so a recorded result (`contract.probes`) can be passed
as is; the helpers at the end give the measured statements a finding cites.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from analysis.stats import wilson


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: str = Field("succeeded", description='"succeeded", or why there is no result ("failed", "cancelled"…).')
    truncated: bool = Field(False, description="The probe's budget ran out before it finished its plan.")
    statement: str | None = Field(None, description="What the probe measured, in one sentence.")


class LrRange(_Result):
    """Learning-rate range test (Smith 2017; fastai lr_find): where the smoothed loss falls fastest."""

    suggested_lr: float = Field(
        gt=0,
        validation_alias=AliasChoices("suggested_lr", "suggested_rate"),
        description="The rate where the loss falls fastest (the recorded result's `suggested_rate`).",
    )
    min_lr: float | None = Field(None, gt=0, description="Lowest rate of the usable range.")
    max_lr: float | None = Field(None, gt=0, description="Highest rate before the loss diverges.")
    job_rate_verdict: str | None = Field(None, description="too_high | too_low | within_range | unknown")

    @model_validator(mode="before")
    @classmethod
    def _from_recorded(cls, data: Any) -> Any:
        """A recorded `LrRangeResult` gives its usable range as `[lo, hi]`; one recorded without a range (the loss
        never fell) measured no rate, whatever its steepest point."""
        if isinstance(data, dict) and "usable_range" in data and not data["usable_range"]:
            return {**data, "suggested_rate": None, "suggested_lr": None}
        if isinstance(data, dict) and data.get("usable_range") and "min_lr" not in data:
            lo, hi = data["usable_range"]
            data = {**data, "min_lr": lo, "max_lr": hi}
        return data


class Memorization(_Result):
    """Can the model fit a small balanced subset with regularization off (Karpathy's 'overfit one batch')?"""

    fitted: bool = Field(description="The worker's point verdict: accuracy ≥ 0.95 or loss ≤ 0.1·ln K.")
    train_accuracy: float | None = Field(
        None,
        ge=0,
        le=1,
        validation_alias=AliasChoices("train_accuracy", "accuracy"),
        description="Accuracy on the subset after the steps (the recorded result's `accuracy`).",
    )
    images: int | None = Field(None, ge=1)


class LinearProbe(_Result):
    """k-fold logistic regression on the base's pooled features: what the frozen features already separate."""

    accuracy: float = Field(ge=0, le=1)
    chance: float | None = Field(None, ge=0, le=1, description="1/K; taken from the class count when missing.")
    images: int | None = Field(None, ge=1)


class LabelCheck(_Result):
    """Confident learning on out-of-sample probabilities (Northcutt et al. 2021): the estimated noise rate."""

    noise_rate: float = Field(ge=0, le=1)
    suspects: int | None = Field(None, ge=0)
    images: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_recorded(cls, data: Any) -> Any:
        """A recorded `LabelCheckResult` lists its suspects as `issues`."""
        if isinstance(data, dict) and isinstance(data.get("issues"), list) and "suspects" not in data:
            data = {**data, "suspects": len(data["issues"])}
        return data


KINDS: dict[str, type[_Result]] = {
    "lr_range": LrRange,
    "memorization": Memorization,
    "linear_probe": LinearProbe,
    "label_check": LabelCheck,
}


def parse(probes: dict[str, dict] | None) -> dict[str, _Result]:
    """The succeeded results among `probes`, typed; unknown probe names and unfinished probes are left out."""
    out: dict[str, _Result] = {}
    for name, raw in (probes or {}).items():
        kind = KINDS.get(name)
        if kind is None or not isinstance(raw, dict):
            continue
        try:
            result = kind.model_validate(raw)
        except ValidationError:  # e.g. a label check whose features did not separate the classes (no noise rate)
            continue
        if result.status == "succeeded":
            out[name] = result
    return out


def statements(probes: dict[str, dict] | None) -> list[str]:
    """One measured sentence per probe, in a fixed order, for a finding's evidence."""
    found = parse(probes)
    return [found[name].statement for name in KINDS if name in found and found[name].statement]


def lr_verdict(probes: dict[str, dict] | None) -> str | None:
    """ "too_high" | "too_low" | "within_range" | "unknown" from the range test; None without one."""
    test = parse(probes).get("lr_range")
    return None if test is None else test.job_rate_verdict or "unknown"


FIT_ACCURACY = 0.95  # the memorization probe's bar (worker/probes/memorization.py)


def memorization_verdict(found: dict[str, _Result]) -> str | None:
    """What the memorization probe can tell apart, from parsed results: "fits", "does_not_fit" (an optimisation or
    wiring fault), or "inconclusive"; None without a memorization probe.

    A shortfall is a fault only when the evidence shows it: the 95 % Wilson interval of the subset's accuracy
    (k of n images) lies wholly below the bar (on 32 images, 30 right is 0.80–0.98: not below 0.95), and below
    what the labels let any model reach where another probe measured it. Wrong labels are slower to memorize
    than right ones, so a model that fits at least the share of labels the label check finds right (1 − its
    noise rate), or fits its subset at least as well as a linear classifier of the base's features predicts
    held-out labels (the linear probe's accuracy, at the low end of its interval), has no optimisation fault to
    show; a fault leaves the subset near chance. A probe whose budget ran out before it fitted is inconclusive.
    """
    probe = found.get("memorization")
    if probe is None:
        return None
    if probe.fitted:
        return "fits"
    if probe.truncated:
        return "inconclusive"
    if probe.train_accuracy is None or probe.images is None:
        return "does_not_fit"  # no accuracy to weigh: the worker's verdict stands
    _, high = wilson(probe.train_accuracy * probe.images, probe.images)
    reachable = [FIT_ACCURACY]
    check, linear = found.get("label_check"), found.get("linear_probe")
    if check is not None:
        reachable.append(1 - check.noise_rate)
    if linear is not None:
        reachable.append(
            wilson(linear.accuracy * linear.images, linear.images)[0] if linear.images else linear.accuracy
        )
    return "does_not_fit" if high < min(reachable) else "inconclusive"


def optimisation_fault(probes: dict[str, dict] | None) -> bool | None:
    """True when the model could not fit a small subset with regularization off (an optimisation or wiring
    fault, not a generalisation one); None without a memorization probe, or when its result cannot tell
    (`memorization_verdict`)."""
    verdict = memorization_verdict(parse(probes))
    return None if verdict in (None, "inconclusive") else verdict == "does_not_fit"


def suggested_rate(probes: dict[str, dict] | None) -> float | None:
    """The rate where the range test's loss fell fastest, for a remedy to take its value from."""
    test = parse(probes).get("lr_range")
    return None if test is None else test.suggested_lr
