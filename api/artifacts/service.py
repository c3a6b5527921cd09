"""Where a job's files are, read without ever leaving its folder.

Files are served only from `<PLATEAU_ARTIFACTS_DIR>/<job id>/` (the folder the worker writes): the
job id is a UUID, a requested path must stay inside that folder after every symlink is resolved, and
symlinks met while listing are skipped, and so are unfinished writes (`models.artifacts`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from models.artifacts import is_partial
from models.paths import NameTooLong, PathEscape, resolve_under
from models.settings import Settings
from models.tables import Job, JobStatus

MODEL_FILE = "model.keras"
CHECKPOINTS = "backup"
TENSORBOARD = "tensorboard"


class NoModel(Exception):
    """The job has no model to download (HTTP 404 when it succeeded, 409 when it did not)."""

    def __init__(self, detail: str, status_code: int):
        self.detail, self.status_code = detail, status_code


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative, '/'-separated
    size: int
    modified_at: datetime


def job_dir(settings: Settings, job: Job) -> Path:
    return settings.artifacts_dir.resolve() / str(job.id)


def inside(base: Path, target: Path) -> bool:
    base, target = base.resolve(), target.resolve()
    return target == base or base in target.parents


def _info(base: Path, path: Path) -> FileInfo | None:
    try:
        st = path.lstat()
    except OSError:  # removed meanwhile (a checkpoint being replaced)
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileInfo(path.relative_to(base).as_posix(), st.st_size, datetime.fromtimestamp(st.st_mtime, tz=timezone.utc))


def files_under(base: Path, sub: str) -> list[FileInfo]:
    """Regular files below `base/sub`, sorted; symlinks (to files or folders) are not followed or listed."""
    top = base / sub
    if top.is_symlink() or not top.is_dir() or not inside(base, top):
        return []
    found = []
    for folder, dirs, names in os.walk(top, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            if is_partial(name):  # a checkpoint still being written, or left by a failed write: not one yet
                continue
            info = _info(base, Path(folder) / name)
            if info is not None:
                found.append(info)
    return found


def model_file(settings: Settings, job: Job) -> Path:
    """The trained model's path; NoModel saying why there is none."""
    if job.status != JobStatus.succeeded.value:
        detail = {
            JobStatus.queued.value: "has not started",
            JobStatus.running.value: "is still running; its model is saved when it succeeds",
        }.get(job.status, f"is {job.status}; only a succeeded job has a trained model")
        raise NoModel(f"job {job.id} {detail}", 409)
    if not job.model_path:
        raise NoModel(f"job {job.id} succeeded but recorded no model file", 404)
    base = job_dir(settings, job)
    # The recorded name, in this job's folder: the directory never comes from the database.
    candidate = base / Path(job.model_path).name
    if not inside(base, candidate) or candidate.parent.resolve() != base.resolve():
        raise NoModel(f"the recorded model path of job {job.id} is not inside its artifacts directory", 404)
    if candidate.is_symlink() or not candidate.is_file():
        raise NoModel(
            f"the model file of job {job.id} ({candidate.name}) is missing from its artifacts "
            "directory; it may have been deleted",
            404,
        )
    return candidate


def model_info(settings: Settings, job: Job) -> FileInfo | None:
    try:
        path = model_file(settings, job)
    except NoModel:
        return None
    return _info(job_dir(settings, job), path)


def artifact_file(settings: Settings, job: Job, rel: str) -> Path:
    """A file below the job's folder; PathEscape when `rel` leads out, FileNotFoundError when there is none
    (a name no file system can hold included: like any unknown name, it is simply not there)."""
    base = job_dir(settings, job)
    try:
        target = resolve_under(base, rel)  # refuses absolute paths, '..', encoded forms and symlinks out
    except NameTooLong:
        raise FileNotFoundError(rel) from None
    try:
        found = target.is_file()
    except OSError:  # unreadable: to the client, the same as absent
        found = False
    if not found:
        raise FileNotFoundError(rel)
    return target


__all__ = [
    "PathEscape",
    "NoModel",
    "FileInfo",
    "job_dir",
    "files_under",
    "model_file",
    "model_info",
    "artifact_file",
    "MODEL_FILE",
    "CHECKPOINTS",
    "TENSORBOARD",
]
