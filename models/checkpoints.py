"""Where a job's weights are kept, for warm starts (`model.init_from`): the API checks them, the worker loads them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal

BEST_WEIGHTS = "best.weights.h5"  # the whole classifier at the best val_accuracy epoch so far
LAST_MODEL = "model.keras"  # the whole classifier as the job ended (written only when it succeeded)
# The training images' pooled features through the frozen base, written when a head-only job caches them; its
# probes read them instead of running the base again (`worker.training.stored_features`). Not a checkpoint.
TRAIN_FEATURES = "train_features.npz"


def checkpoint_file(artifacts_root: Path, job_id: uuid.UUID, checkpoint: Literal["best", "last"]) -> Path:
    return artifacts_root.resolve() / str(job_id) / (BEST_WEIGHTS if checkpoint == "best" else LAST_MODEL)
