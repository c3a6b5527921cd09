"""Results of the worker's probes, as inputs to the rules next to the epoch records.

The worker runs short experiments on a job's own data (a learning-rate range test, a memorization probe, a
linear probe of the base's features, a label check by confident learning) and records each result; the
analysis reads them from `JobContext.probes` keyed by probe name. Plain pydantic, so tests and benchmarks can
pass them without a database. Unknown keys are ignored so a recorded result can be passed as is.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: str = Field("succeeded", description='"succeeded", or why there is no result ("failed", "cancelled"…).')


class LrRange(_Result):
    """Learning-rate range test (Smith 2017; fastai lr_find): where the smoothed loss falls fastest."""

    suggested_lr: float = Field(gt=0, description="The rate where the loss falls fastest (fastai's 'valley').")
    min_lr: float | None = Field(None, gt=0, description="Lowest rate of the usable range.")
    max_lr: float | None = Field(None, gt=0, description="Highest rate before the loss diverges.")


class Memorization(_Result):
    """Can the model fit a small balanced subset with regularization off (Karpathy's 'overfit one batch')?"""

    fitted: bool
    train_accuracy: float | None = Field(None, ge=0, le=1)
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
        result = kind.model_validate(raw)
        if result.status == "succeeded":
            out[name] = result
    return out
