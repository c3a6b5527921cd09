"""HTTP routes for probes and label issues: thin, `models.probes` holds the logic."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from api.auth import CallerDep
from api.deps import SessionDep, SettingsDep
from api.errors import Conflict, InvalidField, NotFound
from contract.probes import LabelIssuePage, ProbeList, ProbeRead, ProbeRequest
from models import probes
from models.jobs import service as jobs

router = APIRouter(prefix="/jobs", tags=["probes"])


@router.post("/{job_id}/probes", status_code=202, response_model=ProbeList)
def request_probes(
    job_id: uuid.UUID, session: SessionDep, caller: CallerDep, body: ProbeRequest | None = None
) -> ProbeList:
    """Queue probes (all when `probes` is omitted) on the job's data and latest weights; 409 if one is already under way."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    body = body or ProbeRequest()
    try:
        queued = probes.request(session, job=job, names=body.names(), budget_seconds=body.budget_seconds)
    except probes.ProbeBusy as exc:
        raise Conflict(str(exc)) from None
    return ProbeList(items=[ProbeRead.model_validate(p) for p in queued])


@router.get("/{job_id}/probes", response_model=ProbeList)
def list_probes(job_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> ProbeList:
    """The job's probes, newest first, with their results."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    return ProbeList(items=[ProbeRead.model_validate(p) for p in probes.list_for_job(session, job.id)])


@router.get("/{job_id}/probes/{probe_id}", response_model=ProbeRead)
def get_probe(job_id: uuid.UUID, probe_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> ProbeRead:
    """One probe of the job."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    probe = probes.get(session, job.id, probe_id)
    if probe is None:
        raise NotFound(f"probe {probe_id} of job {job_id}")
    return ProbeRead.model_validate(probe)


@router.post("/{job_id}/probes/{probe_id}/cancel", status_code=202, response_model=ProbeRead)
def cancel_probe(job_id: uuid.UUID, probe_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> ProbeRead:
    """Cancel a queued probe at once, or ask a running one to stop at its next step; 409 once it ended."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    probe = probes.get(session, job.id, probe_id)
    if probe is None:
        raise NotFound(f"probe {probe_id} of job {job_id}")
    return ProbeRead.model_validate(probes.request_cancel(session, probe))


@router.get("/{job_id}/label-issues", response_model=LabelIssuePage)
def label_issues(
    job_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> LabelIssuePage:
    """Suspect labels from the latest label check, most suspect first, in pages; pass `next_cursor` back as `cursor`."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    try:
        page = probes.label_issues(session, job, limit=min(limit, settings.page_size_max), cursor=cursor or None)
    except ValueError as exc:
        raise InvalidField([{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]) from None
    return LabelIssuePage.model_validate(page)


@router.get(
    "/{job_id}/label-issues/{n}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}, "description": "The suspect's image file."}},
)
def label_issue_image(
    job_id: uuid.UUID, n: Annotated[int, PathParam(ge=0)], session: SessionDep, settings: SettingsDep, caller: CallerDep
) -> FileResponse:
    """The image of the n-th suspect of the latest label check; only files under the job's own train_dir are served."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    path = probes.suspect_image(session, job, n, data_root=settings.data_root)
    if path is None:
        raise NotFound(f"label issue {n} of job {job_id}")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})
