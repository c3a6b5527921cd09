"""A job's files: GET /jobs/{id}/model, GET /jobs/{id}/artifacts and GET /jobs/{id}/artifacts/{path}."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from api.artifacts import service
from api.auth import CallerDep
from api.deps import SessionDep, SettingsDep
from api.errors import Conflict, InvalidField
from contract.artifacts import ArtifactFile, ArtifactsRead, TensorBoardRead
from models.jobs import service as jobs
from models.paths import PathEscape

router = APIRouter(prefix="/jobs", tags=["artifacts"])

OCTET = "application/octet-stream"


def _read(request: Request, job_id: uuid.UUID, info: service.FileInfo) -> ArtifactFile:
    if info.path == service.MODEL_FILE:
        url = str(request.url_for("download_model", job_id=job_id))
    else:
        url = str(request.url_for("download_artifact", job_id=job_id, path=quote(info.path, safe="/")))
    return ArtifactFile(path=info.path, size=info.size, modified_at=info.modified_at, url=url)


def _shown(path: str, limit: int = 120) -> str:
    """The requested name as a 404 echoes it: quoted, and cut when it is longer than any real artifact name."""
    return repr(path if len(path) <= limit else path[:limit] + "…")


@router.get(
    "/{job_id}/model",
    name="download_model",
    response_class=FileResponse,
    responses={
        200: {"content": {OCTET: {}}, "description": "The trained Keras model (.keras)."},
        404: {"description": "The job succeeded but its model file is missing (the reason is given)."},
        409: {"description": "The job has not succeeded."},
    },
)
def download_model(job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, caller: CallerDep) -> FileResponse:
    """The trained model as a `.keras` file; 409 until the job has succeeded."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    try:
        path = service.model_file(settings, job)
    except service.NoModel as exc:
        if exc.status_code == 409:
            raise Conflict(exc.detail) from None
        raise HTTPException(status_code=404, detail=exc.detail) from None
    return FileResponse(path, media_type=OCTET, filename=f"{job.id}.keras")


@router.get("/{job_id}/artifacts", response_model=ArtifactsRead)
def list_artifacts(
    job_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep
) -> ArtifactsRead:
    """The model, resume checkpoints and TensorBoard event files of a job, with their sizes."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    base = service.job_dir(settings, job)
    model = service.model_info(settings, job)
    checkpoints = service.files_under(base, service.CHECKPOINTS)
    events = service.files_under(base, service.TENSORBOARD)
    board = None
    if events:
        board = TensorBoardRead(
            dir=str(base / service.TENSORBOARD),
            size=sum(f.size for f in events),
            files=[_read(request, job.id, f) for f in events],
        )
    return ArtifactsRead(
        job_id=job.id,
        status=job.status,
        artifacts_dir=str(base),
        model=_read(request, job.id, model) if model else None,
        checkpoints=[_read(request, job.id, f) for f in checkpoints],
        tensorboard=board,
        total_size=sum(f.size for f in [*checkpoints, *events, *([model] if model else [])]),
    )


@router.get(
    "/{job_id}/artifacts/{path:path}",
    name="download_artifact",
    response_class=FileResponse,
    responses={
        200: {"content": {OCTET: {}}},
        404: {"description": "No such file."},
        422: {"description": "The path leads outside the job's artifacts directory."},
    },
)
def download_artifact(
    job_id: uuid.UUID, path: str, session: SessionDep, settings: SettingsDep, caller: CallerDep
) -> FileResponse:
    """One file listed by GET /jobs/{id}/artifacts (a checkpoint or a TensorBoard event file)."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    try:
        target = service.artifact_file(settings, job, path)
    except PathEscape as exc:
        reason = str(exc).replace("the data root", "the job's artifacts directory")
        raise InvalidField([{"loc": ["path", "path"], "msg": f"{path!r} {reason}", "type": "path_escape"}]) from None
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail=f"job {job.id} has no artifact {_shown(path)}") from None
    return FileResponse(target, media_type=OCTET, filename=target.name)
