"""Response schemas of the artifacts endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from contract.status import JobStatusName


class ArtifactFile(BaseModel):
    path: str = Field(description="Relative to the job's artifacts directory, '/'-separated.")
    size: int = Field(description="Bytes.")
    modified_at: datetime
    url: str = Field(description="Where to download it.")


class TensorBoardRead(BaseModel):
    dir: str = Field(description="Absolute path on the service's artifacts volume: `tensorboard --logdir <dir>`.")
    size: int = Field(description="Bytes of all event files.")
    files: list[ArtifactFile]


class ArtifactsRead(BaseModel):
    job_id: uuid.UUID
    status: JobStatusName
    artifacts_dir: str = Field(description="The job's folder on the artifacts volume.")
    model: ArtifactFile | None = Field(description="The trained model (.keras), once the job has succeeded.")
    checkpoints: list[ArtifactFile] = Field(
        description="Resume checkpoints under backup/; present while a job runs or after it failed, "
        "removed when it succeeds (the model supersedes them)."
    )
    tensorboard: TensorBoardRead | None = Field(description="TensorBoard event files, once training has started.")
    total_size: int = Field(description="Bytes of everything listed.")
