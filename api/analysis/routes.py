"""Stagnation analysis of a job, and forking it into the next job."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.auth import CallerDep
from api.deps import SessionDep, SettingsDep
from api.jobs.routes import to_read
from contract.analysis import AnalysisRead, ForkRequest
from contract.jobs import JobRead
from models.analysis import service
from models.jobs import service as jobs

router = APIRouter(prefix="/jobs", tags=["analysis"])


@router.get("/{job_id}/analysis", response_model=AnalysisRead)
def get_analysis(
    job_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    rules: Annotated[str | None, Query(description="Comma-separated rule ids; all when absent.")] = None,
) -> AnalysisRead:
    """Why validation stalls, with evidence; override rule parameters as `rule.param=value` query parameters."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    params = service.parse_overrides(dict(request.query_params))
    chosen = [r.strip() for r in rules.split(",") if r.strip()] if rules else None
    found = service.diagnose(
        session=session, job=job, params=params, rules=chosen, max_cached_epochs=settings.analysis_history_cache_epochs
    )
    pre = service.pre_training_findings(session=session, job=job)
    return AnalysisRead(**found.model_dump(), job_id=job.id, status=job.status, pre_training=pre)


@router.post("/{job_id}/fork", status_code=202, response_model=JobRead)
def fork_job(
    job_id: uuid.UUID,
    body: ForkRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> JobRead:
    """Queue a new job: this job's spec with the chosen remedies and patch applied, linked to its parent."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    child, _ = service.fork(session=session, settings=settings, job=job, apply=body.apply, patch=body.patch)
    response.headers["Location"] = str(request.url_for("get_job", job_id=child.id))
    return to_read(request, child)
