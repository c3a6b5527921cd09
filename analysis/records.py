"""What the analysis reads: one record per finished epoch, and the job around them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Fields a rule may name as a signal; every one is optional because jobs record different subsets.
FLOAT_SIGNALS = (
    "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
    "train_eval_loss", "train_eval_accuracy",
    "batch_loss_mean", "batch_loss_std", "batch_loss_max",
    "grad_norm", "update_ratio_head", "update_ratio_base",
)


class EpochRecord(BaseModel):
    """One finished epoch. None means "not recorded", never zero.

    Keras' `loss`/`accuracy` are training-mode running averages; `train_eval_*` are the model in
    inference mode on a fixed training subset, the honest side of a train/validation gap.
    """

    # Extra keys (timings, throughput) are ignored so a worker row can be passed as is.
    model_config = ConfigDict(extra="ignore")

    epoch: int = Field(ge=0, description="Epoch number as recorded (Plateau counts from 1).")
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    train_eval_loss: float | None = None
    train_eval_accuracy: float | None = None
    regularization_loss: float | None = Field(
        None, ge=0, description="The weight penalty (L2) included in loss, val_loss and train_eval_loss alike.")
    batch_loss_mean: float | None = None
    batch_loss_std: float | None = None
    batch_loss_max: float | None = None
    grad_norm: float | None = None
    update_ratio_head: float | None = Field(None, description="‖W_after − W_before‖ / ‖W_before‖ of the head across one optimizer step.")
    update_ratio_base: float | None = Field(None, description="‖W_after − W_before‖ / ‖W_before‖ of the trainable base across one optimizer step.")
    nonfinite_batches: int | None = Field(None, ge=0)
    val_recall: dict[str, float | None] | None = Field(None, description="Per-class validation recall; None for a class without support.")
    val_support: dict[str, int] | None = None
    confusion: list[list[int]] | None = Field(None, description="Validation confusion matrix, rows = true class.")


class JobContext(BaseModel):
    """The job the history belongs to. `spec` is the job spec JSON; missing keys take Keras/Plateau defaults."""

    model_config = ConfigDict(extra="ignore")

    spec: dict = Field(default_factory=dict)
    class_counts_train: dict[str, int] | None = None
    class_counts_val: dict[str, int] | None = None
    planned_epochs: int | None = None
    lr_reductions: list[int] = Field(default_factory=list, description="Epochs at which ReduceLROnPlateau cut the LR.")
    status: str | None = None
