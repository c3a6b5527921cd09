"""Read the job spec dict with the contract's defaults filled in where a key is missing or null.

The analysis reads stored specs and the partial specs of tests and benchmarks, so it does not validate them;
every default comes from `contract.spec`, the same declaration the trainer uses.
"""

from __future__ import annotations

import re
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

_BLOCK = re.compile(r"^mixed(\d+)$")
LAST_BLOCK = 10  # Inception-V3 ends at mixed10


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


class SpecView:
    """Typed, defaulted access to the parts of a job spec the rules and remedies use."""

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
        mode = _get(self.model, ModelSpec, "batchnorm")
        if mode == "auto":
            return "train" if self.weights is None else "frozen"
        return str(mode)

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


def fewer_trainable(trainable: str | int) -> str | int | None:
    """One step towards a frozen base: all → top blocks → fewer blocks → head. None when already frozen."""
    if trainable == "head":
        return None
    if trainable == "all":
        return "mixed8"
    if isinstance(trainable, int):
        return trainable // 2 if trainable // 2 >= 1 else "head"
    match = _BLOCK.match(str(trainable))
    if match and int(match.group(1)) < LAST_BLOCK:
        return f"mixed{int(match.group(1)) + 1}"
    return "head"


def round_sig(x: float, digits: int = 3) -> float:
    """Keep suggested values readable: 0.00010000000000000002 → 0.0001."""
    return float(f"{x:.{digits}g}")
