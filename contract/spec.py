"""The job spec: what a user asks Plateau to train. Keras names and Keras defaults where they exist."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.probes import DiagnosisSpec
from contract.webhook import WebhookSpec

MAX_EXCLUDED = 10_000  # dataset.exclude entries
Metric = Literal["loss", "accuracy", "val_loss", "val_accuracy"]
INCEPTION_BLOCK = re.compile(r"^mixed(10|[0-9])$")


# Seeds reach numpy and tf.random, which take 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class _Strict(BaseModel):
    # strict: `true` is not 1 and "299" is not 299 (a JSON integer still fills a float field);
    # allow_inf_nan=False: NaN and Infinity can neither train nor be stored as JSON.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DatasetSpec(_Strict):
    train_dir: str = Field(min_length=1, description="Class-subfolder image directory, relative to the data root.")
    val_dir: str | None = Field(
        None, min_length=1, description="Validation directory; exclusive with validation_split."
    )
    validation_split: float | None = Field(
        None, gt=0, lt=1, description="Fraction of train_dir held out for validation."
    )
    image_size: int = Field(299, ge=75, le=512, description="Square input size; Inception-V3 needs at least 75.")
    seed: Seed | None = Field(None, description="Seed of the train/validation split and shuffling, 0 <= seed < 2**32.")
    exclude: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(
        None,
        max_length=MAX_EXCLUDED,
        description="Files under train_dir (e.g. suspects of a label check) the job leaves out, relative to train_dir.",
    )

    @model_validator(mode="after")
    def _one_validation_source(self) -> DatasetSpec:
        if (self.val_dir is None) == (self.validation_split is None):
            raise ValueError("give exactly one of val_dir or validation_split")
        return self


Trainable = Annotated[
    Literal["head", "all"] | Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=INCEPTION_BLOCK.pattern)],
    Field(
        description='"head" (base frozen), "all", N (the top N base layers), or "mixedK" (from Inception block K on).'
    ),
]


class InitFrom(_Strict):
    """Start from another job's trained weights (a warm start) instead of `weights`."""

    job: Annotated[uuid.UUID, Field(strict=False, description="A job of the same tenant with the same head.")]
    checkpoint: Literal["best", "last"] = Field(
        "best", description='"best": the weights of its best val_accuracy epoch; "last": those it ended with.'
    )


class ModelSpec(_Strict):
    weights: str | None = Field(
        "imagenet", description='"imagenet", null (random init), or a .h5 weights file of the base under the data root.'
    )
    trainable: Trainable = "head"
    dense_units: int = Field(1024, ge=1, le=16384)
    batchnorm: Literal["auto", "frozen", "train"] = Field(
        "auto",
        description='BatchNorm layers of the unfrozen base: "frozen" keeps them in inference mode with their '
        'pre-trained statistics, "train" updates them; "auto" is frozen for pre-trained weights and '
        "trained for a random-init base.",
    )
    init_from: InitFrom | None = Field(
        None,
        description='Warm start: {"job": id, "checkpoint": "best" | "last"}; the job must be of the same tenant, '
        "have that checkpoint, and have the same head (classes, dense_units).",
    )

    @field_validator("weights")
    @classmethod
    def _weights_file(cls, v: str | None) -> str | None:
        if v is not None and v != "imagenet" and not (v.endswith(".h5") or v.endswith(".keras")):
            raise ValueError('must be "imagenet", null, or a path ending in .weights.h5 / .h5')
        return v


class AugmentationSpec(_Strict):
    """ImageDataGenerator's options, applied by Keras preprocessing layers to training batches only."""

    rotation_range: float = Field(0.0, ge=0, le=360, description="Degrees.")
    width_shift_range: float = Field(0.0, ge=0, lt=1)
    height_shift_range: float = Field(0.0, ge=0, lt=1)
    shear_range: float = Field(0.0, ge=0, lt=1, description="Shear intensity as a fraction of the image size.")
    zoom_range: float = Field(0.0, ge=0, lt=1, description="Zoom in [1 - z, 1 + z].")
    horizontal_flip: bool = False
    fill_mode: Literal["constant", "nearest", "reflect", "wrap"] = "nearest"


class RegularizationSpec(_Strict):
    dropout: float = Field(0.0, ge=0, lt=1, description="Rate of both head dropout layers.")
    dense_dropout: float | None = Field(None, ge=0, lt=1, description="Rate of the second dropout layer, if different.")
    l2: float = Field(0.0, ge=0, le=1, description="L2 kernel regularizer on the head's Dense layers.")
    l2_base: bool = Field(False, description="Also apply l2 to the unfrozen base layers.")
    augmentation: AugmentationSpec | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class OptimizerSpec(_Strict):
    name: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd and rmsprop only.")
    weight_decay: float | None = Field(None, ge=0, le=1)


class ReduceLROnPlateauSpec(_Strict):
    monitor: Metric = "val_loss"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0)
    min_delta: float = Field(1e-4, ge=0)
    cooldown: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class EarlyStoppingSpec(_Strict):
    monitor: Metric = "val_loss"
    patience: int = Field(0, ge=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = False


class CallbacksSpec(_Strict):
    reduce_lr_on_plateau: ReduceLROnPlateauSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None


class OnStagnationSpec(_Strict):
    action: Literal["stop", "none"] = "none"
    rules: list[str] | None = Field(None, description="Rule ids that may stop the job; all when null.")
    after_epochs: int = Field(3, ge=1, description="Run the analysis from this many finished epochs on.")
    min_confidence: float = Field(0.7, ge=0, le=1, description="Stop only on a finding at least this confident.")


class PerformanceSpec(_Strict):
    """How fast a job trains; none of these change what is learned beyond float rounding."""

    mixed_precision: Literal["auto", "off", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto",
        description='Keras dtype policy of the model: "auto" is mixed_float16 on a GPU and float32 on a CPU; '
        '"off" is float32.',
    )
    jit_compile: bool = Field(False, description="XLA-compile the train step (Keras' jit_compile).")
    cache_features: Literal["auto", "off"] = Field(
        "auto",
        description='"auto": when only the head trains and there is no augmentation, compute the frozen '
        "base's pooled features once and train the head on them.",
    )


class JobSpec(_Strict):
    name: str | None = Field(None, max_length=200)
    dataset: DatasetSpec
    model: ModelSpec = ModelSpec()
    regularization: RegularizationSpec = RegularizationSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    callbacks: CallbacksSpec = CallbacksSpec()
    performance: PerformanceSpec = PerformanceSpec()
    on_stagnation: OnStagnationSpec | None = None
    diagnosis: DiagnosisSpec | None = Field(None, description="Probes run when a stall is first detected.")
    batch_size: int = Field(32, ge=1, le=4096)
    epochs: int = Field(10, ge=1, le=100_000)
    seed: Seed | None = Field(None, description="Seeds Keras, shuffling and augmentation, 0 <= seed < 2**32.")
    class_weight: Literal["none", "balanced"] = "none"
    webhook: WebhookSpec | None = Field(
        None, description="POST state changes and findings to this URL, signed (see docs/observability.md)."
    )

    @model_validator(mode="after")
    def _optimizer_options(self) -> JobSpec:
        opt = self.optimizer
        if opt.momentum and opt.name not in ("sgd", "rmsprop"):
            raise ValueError(f"optimizer.momentum applies to sgd and rmsprop, not {opt.name}")
        # weight_decay needs no such check: all four Keras optimizers take it.
        return self

    def path_fields(self) -> dict[tuple[str, ...], str]:
        """Every user-given path, by its location in the spec."""
        paths = {("dataset", "train_dir"): self.dataset.train_dir}
        if self.dataset.val_dir is not None:
            paths[("dataset", "val_dir")] = self.dataset.val_dir
        if self.model.weights not in (None, "imagenet"):
            paths[("model", "weights")] = self.model.weights
        return paths

    def excluded_paths(self) -> dict[tuple[str | int, ...], str]:
        """Every file of `dataset.exclude`, by its location in the spec: paths under train_dir."""
        return {("dataset", "exclude", i): p for i, p in enumerate(self.dataset.exclude or [])}
