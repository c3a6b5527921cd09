"""HTTP routes for jobs: thin, the service holds the logic."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import TypeAdapter

from api.auth import CallerDep
from api.deps import SessionDep, SettingsDep
from api.jobs import page_cache
from contract.autopilot import JobSubmission
from contract.jobs import JobDetail, JobEventRead, JobLinks, JobPage, JobRead, MetricsPage
from contract.status import JobStatusName
from models.autopilot import service as autopilot
from models.jobs import service
from models.tables import Job

router = APIRouter(prefix="/jobs", tags=["jobs"])
_PAGE = TypeAdapter(dict[str, Any])


def links(request: Request, job: Job) -> JobLinks:
    base = str(request.url_for("get_job", job_id=job.id))
    return JobLinks(self=base, metrics=f"{base}/metrics", analysis=f"{base}/analysis", cancel=f"{base}/cancel")


def to_read(request: Request, job: Job) -> JobRead:
    return JobRead.model_validate({**job.model_dump(), "links": links(request, job)})


@router.post("", status_code=202, response_model=JobRead)
def submit_job(
    spec: JobSubmission,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="Replays return the first job; an empty value counts as no key.")
    ] = None,
) -> JobRead:
    """Queue a training job; a repeated Idempotency-Key returns the job it first created. An empty key is no key."""
    job, created = service.create_job(
        session=session, spec=spec, settings=settings, owner=caller.tenant, idempotency_key=idempotency_key or None
    )
    if not created:
        response.status_code = 200
    elif spec.autopilot is not None:  # stored beside the job, never inside its training spec
        autopilot.start(session=session, job=job, config=spec.autopilot, settings=settings)
        session.refresh(job)
    response.headers["Location"] = str(request.url_for("get_job", job_id=job.id))
    return to_read(request, job)


@router.get("", response_model=JobPage)
def list_jobs(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    status: JobStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> JobPage:
    """Jobs, newest first, in pages; pass `next_cursor` back as `cursor`."""
    jobs, next_cursor = service.list_jobs(
        session=session, status=status, limit=min(limit, settings.page_size_max), cursor=cursor, owner=caller.scope
    )
    return JobPage(items=[to_read(request, j) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail, name="get_job")
def get_job(job_id: uuid.UUID, request: Request, session: SessionDep, caller: CallerDep) -> JobDetail:
    """One job with its state history and the jobs forked from it."""
    job = service.get_job(session=session, job_id=job_id, owner=caller.scope)
    return JobDetail.model_validate(
        {
            **to_read(request, job).model_dump(),
            "events": [JobEventRead.model_validate(e) for e in service.job_events(session=session, job=job)],
            "children": service.job_children(session=session, job=job),
            "ancestors": service.ancestors(session=session, job=job),
        }
    )


@router.get(
    "/{job_id}/metrics",
    response_model=MetricsPage,
    responses={304: {"description": "Not Modified: the page is unchanged since the ETag sent in If-None-Match"}},
)
def get_metrics(
    job_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    after_epoch: Annotated[int | None, Query(ge=0, le=2_147_483_647)] = None,  # epochs are a 32-bit column
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Epoch rows in ascending order, only those after `after_epoch`; with an ETag for cheap polling."""
    job = service.get_job(session=session, job_id=job_id, owner=caller.scope)
    limit = min(limit, settings.page_size_max)
    version = job.metrics_version  # read before the rows: see page_cache.page
    tag = page_cache.etag(version, after_epoch, limit)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}  # clients may keep it, but must revalidate
    if if_none_match is not None and page_cache.matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)

    def render() -> bytes:
        rows, next_after = service.list_metrics(session=session, job=job, after_epoch=after_epoch, limit=limit)
        # The rows come from typed columns and already have MetricsPage's shape: serialize them directly
        # (same serializer, same bytes) instead of validating up to 1,000 rows into models first.
        return _PAGE.dump_json({"items": rows, "next_after_epoch": next_after})

    body = page_cache.page(
        (job.id, after_epoch, limit), version, render, max_bytes=settings.metrics_page_cache_mb << 20
    )
    return Response(body, media_type="application/json", headers=headers)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobRead)
def cancel_job(job_id: uuid.UUID, request: Request, session: SessionDep, caller: CallerDep) -> JobRead:
    """Cancel a queued job at once, or ask a running one to stop at its next batch."""
    job = service.get_job(session=session, job_id=job_id, owner=caller.scope)
    return to_read(request, service.cancel_job(session=session, job=job))
