"""Read the job spec dict with the defaults the trainer applies when a key is missing."""

from __future__ import annotations

import re
from typing import Any

# Same defaults as the job spec model and Keras; duplicated so analysis/ imports nothing else.
DEFAULT_LR = 1e-3
DEFAULT_BATCH = 32
REDUCE_LR_DEFAULTS = {"monitor": "val_loss", "factor": 0.1, "patience": 10, "min_delta": 1e-4, "cooldown": 0, "min_lr": 0.0}
EARLY_STOPPING_DEFAULTS = {"monitor": "val_loss", "patience": 0, "min_delta": 0.0, "restore_best_weights": False}
_BLOCK = re.compile(r"^mixed(\d+)$")
LAST_BLOCK = 10  # Inception-V3 ends at mixed10


def _section(spec: dict, key: str) -> dict:
    value = spec.get(key)
    return value if isinstance(value, dict) else {}


def _get(section: dict, key: str, default: Any) -> Any:
    value = section.get(key)
    return default if value is None else value


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
        return self.model.get("weights", "imagenet")

    @property
    def trainable(self) -> str | int:
        return _get(self.model, "trainable", "head")

    @property
    def batchnorm(self) -> str:
        """"frozen" or "train", resolved as the trainer does: "auto" keeps pre-trained statistics and trains a
        random-init base's."""
        mode = _get(self.model, "batchnorm", "auto")
        if mode == "auto":
            return "train" if self.weights is None else "frozen"
        return str(mode)

    @property
    def base_frozen(self) -> bool:
        return self.trainable == "head"

    @property
    def dropout(self) -> float:
        return float(_get(self.reg, "dropout", 0.0))

    @property
    def dense_dropout(self) -> float | None:
        value = self.reg.get("dense_dropout")
        return None if value is None else float(value)

    @property
    def l2(self) -> float:
        return float(_get(self.reg, "l2", 0.0))

    @property
    def augmentation(self) -> dict | None:
        value = self.reg.get("augmentation")
        return value if isinstance(value, dict) else None

    @property
    def label_smoothing(self) -> float:
        return float(_get(self.reg, "label_smoothing", 0.0))

    @property
    def optimizer(self) -> str:
        return str(_get(self.opt, "name", "adam"))

    @property
    def lr(self) -> float:
        return float(_get(self.opt, "learning_rate", DEFAULT_LR))

    @property
    def momentum(self) -> float:
        return float(_get(self.opt, "momentum", 0.0))

    @property
    def batch_size(self) -> int:
        return int(_get(self.raw, "batch_size", DEFAULT_BATCH))

    @property
    def class_weight(self) -> str:
        return str(_get(self.raw, "class_weight", "none"))

    @property
    def reduce_lr(self) -> dict | None:
        """ReduceLROnPlateau settings with Keras defaults filled in, or None when not configured."""
        value = self.callbacks.get("reduce_lr_on_plateau")
        return {**REDUCE_LR_DEFAULTS, **{k: v for k, v in value.items() if v is not None}} if isinstance(value, dict) else None

    @property
    def early_stopping(self) -> dict | None:
        value = self.callbacks.get("early_stopping")
        return {**EARLY_STOPPING_DEFAULTS, **{k: v for k, v in value.items() if v is not None}} if isinstance(value, dict) else None

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
