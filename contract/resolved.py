"""The job spec as the trainer resolves it, written once for the worker and the analysis.

`resolve_batchnorm` ("auto" → "frozen" or "train"), `INCEPTION_BLOCKS` (the base's block order) and
`train_eval_indices` (the fixed training subset measured in inference mode each epoch) are what the worker
trains with; `ResolvedSpec` reads a stored spec dict with the contract's defaults filled in where a key is
missing or null (the analysis reads stored specs and the partial specs of tests and benchmarks, so it does not
validate them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from contract.spec import (
    EarlyStoppingSpec,
    JobSpec,
    ModelSpec,
    OptimizerSpec,
    ReduceLROnPlateauSpec,
    RegularizationSpec,
)

INCEPTION_BLOCKS: tuple[str, ...] = tuple(f"mixed{k}" for k in range(11))  # Inception-V3's blocks, input to output
LAST_BLOCK = len(INCEPTION_BLOCKS) - 1
TRAIN_EVAL_IMAGES = 256  # at most this many training images are measured in inference mode each epoch


def train_eval_indices(n_train: int) -> list[int]:
    """Indices of the fixed training subset measured in inference mode (`train_eval_*`): min(n, 256) images spread
    evenly over the training set, so the subset's size is known exactly from the training set's."""
    m = min(n_train, TRAIN_EVAL_IMAGES)
    return [i * n_train // m for i in range(m)] if m else []


def train_eval_size(n_train: int) -> int:
    """How many images `train_eval_*` are measured on for a training set of `n_train` images."""
    return min(max(n_train, 0), TRAIN_EVAL_IMAGES)


def resolve_batchnorm(mode: str, weights: str | None) -> str:
    """ "frozen" or "train": what the base's BatchNorm layers do when the base trains. "auto" keeps pre-trained
    statistics (ImageNet or a weights file) and lets a random-init base learn its own."""
    if mode == "auto":
        return "train" if weights is None else "frozen"
    return str(mode)


def _section(spec: dict, key: str) -> dict:
    value = spec.get(key)
    return value if isinstance(value, dict) else {}


def _get(section: dict, schema: type[BaseModel], key: str) -> Any:
    """`section[key]`, or the contract's default for it when missing or null."""
    value = section.get(key)
    return schema.model_fields[key].get_default(call_default_factory=True) if value is None else value


def _with_defaults(value: Any, schema: type[BaseModel]) -> dict | None:
    """A callback's settings with the contract's defaults filled in, or None when the callback is not configured."""
    if not isinstance(value, dict):
        return None
    return {**schema().model_dump(), **{k: v for k, v in value.items() if v is not None}}


class ResolvedSpec:
    """Typed, defaulted access to the parts of a stored job spec the rules and remedies use."""

    def __init__(self, spec: dict | None):
        self.raw = spec or {}
        self.model = _section(self.raw, "model")
        self.reg = _section(self.raw, "regularization")
        self.opt = _section(self.raw, "optimizer")
        self.callbacks = _section(self.raw, "callbacks")

    @property
    def weights(self) -> str | None:
        # null is a value here (random init), not "use the default"
        return self.model.get("weights", ModelSpec.model_fields["weights"].default)

    @property
    def trainable(self) -> str | int:
        return _get(self.model, ModelSpec, "trainable")

    @property
    def batchnorm(self) -> str:
        """ "frozen" or "train", resolved as the trainer does: "auto" keeps pre-trained statistics and trains a
        random-init base's."""
        return resolve_batchnorm(_get(self.model, ModelSpec, "batchnorm"), self.weights)

    @property
    def base_frozen(self) -> bool:
        return self.trainable == "head"

    @property
    def dropout(self) -> float:
        return float(_get(self.reg, RegularizationSpec, "dropout"))

    @property
    def dense_dropout(self) -> float | None:
        value = _get(self.reg, RegularizationSpec, "dense_dropout")
        return None if value is None else float(value)

    @property
    def l2(self) -> float:
        return float(_get(self.reg, RegularizationSpec, "l2"))

    @property
    def augmentation(self) -> dict | None:
        value = self.reg.get("augmentation")
        return value if isinstance(value, dict) else None

    @property
    def label_smoothing(self) -> float:
        return float(_get(self.reg, RegularizationSpec, "label_smoothing"))

    @property
    def optimizer(self) -> str:
        return str(_get(self.opt, OptimizerSpec, "name"))

    @property
    def lr(self) -> float:
        return float(_get(self.opt, OptimizerSpec, "learning_rate"))

    @property
    def momentum(self) -> float:
        return float(_get(self.opt, OptimizerSpec, "momentum"))

    @property
    def epochs(self) -> int:
        return int(_get(self.raw, JobSpec, "epochs"))

    @property
    def batch_size(self) -> int:
        return int(_get(self.raw, JobSpec, "batch_size"))

    @property
    def class_weight(self) -> str:
        return str(_get(self.raw, JobSpec, "class_weight"))

    @property
    def reduce_lr(self) -> dict | None:
        """ReduceLROnPlateau settings with Keras defaults filled in, or None when not configured."""
        return _with_defaults(self.callbacks.get("reduce_lr_on_plateau"), ReduceLROnPlateauSpec)

    @property
    def early_stopping(self) -> dict | None:
        return _with_defaults(self.callbacks.get("early_stopping"), EarlyStoppingSpec)

    @property
    def min_lr(self) -> float:
        return float(self.reduce_lr["min_lr"]) if self.reduce_lr else 0.0
