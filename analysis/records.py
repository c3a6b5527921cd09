"""The job around a history of epoch records (`contract.epoch.EpochRecord`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class JobContext(BaseModel):
    """The job the history belongs to. `spec` is the job spec JSON; missing keys take Keras/Plateau defaults."""

    model_config = ConfigDict(extra="ignore")

    spec: dict = Field(default_factory=dict)
    class_counts_train: dict[str, int] | None = None
    class_counts_val: dict[str, int] | None = None
    planned_epochs: int | None = None
    lr_reductions: list[int] = Field(default_factory=list, description="Epochs at which ReduceLROnPlateau cut the LR.")
    status: str | None = None
    probes: dict[str, dict] = Field(
        default_factory=dict,
        description="Recorded probe results by probe name (analysis.probes: lr_range, memorization, linear_probe, "
        "label_check); each rule uses the ones it understands.",
    )
