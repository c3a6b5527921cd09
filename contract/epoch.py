"""The epoch record: every per-epoch signal, declared once.

The SQL table (`models.tables.EpochMetric`) generates its columns from `EpochRecord`'s fields, the API
answers with `EpochRead`, and the analysis reads `EpochRecord`: a new signal is a field here (plus its
migration and the code that measures it), and tests/test_epoch_contract.py fails if any of them misses it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class EpochRecord(BaseModel):
    """One finished epoch. None means "not recorded", never zero: jobs record different subsets.

    Keras' `loss`/`accuracy` are training-mode running averages; `train_eval_*` are the model in
    inference mode on a fixed training subset, the honest side of a train/validation gap.
    """

    # Extra keys are ignored so a worker row can be passed as is; attributes so a table row can.
    model_config = ConfigDict(extra="ignore", from_attributes=True)

    epoch: int = Field(ge=0, description="Epoch number as recorded (Plateau counts from 1).")
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    epoch_seconds: float | None = Field(None, description="Wall time of the epoch, validation included.")
    images_per_second: float | None = Field(None, description="Training throughput of the epoch.")
    train_eval_loss: float | None = None
    train_eval_accuracy: float | None = None
    regularization_loss: float | None = Field(
        None, description="The weight penalty (L2, >= 0) included in loss, val_loss and train_eval_loss alike."
    )
    batch_loss_mean: float | None = None
    batch_loss_std: float | None = None
    batch_loss_max: float | None = None
    nonfinite_batches: int | None = Field(None, ge=0)
    grad_norm: float | None = None
    update_ratio_head: float | None = Field(
        None, description="‖W_after − W_before‖ / ‖W_before‖ of the head across one optimizer step."
    )
    update_ratio_base: float | None = Field(
        None, description="‖W_after − W_before‖ / ‖W_before‖ of the trainable base across one optimizer step."
    )
    val_recall: dict[str, float | None] | None = Field(
        None, description="Per-class validation recall; None for a class without support."
    )
    val_support: dict[str, int] | None = None
    confusion: list[list[int]] | None = Field(None, description="Validation confusion matrix, rows = true class.")


SIGNALS: tuple[str, ...] = tuple(name for name in EpochRecord.model_fields if name != "epoch")
"""Every per-epoch signal, in declaration order."""


class EpochRead(EpochRecord):
    """`GET /jobs/{id}/metrics` items and `epoch` events: the record as stored."""

    recorded_at: datetime
