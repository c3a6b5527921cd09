"""Autopilot, lineage and remedy-outcome endpoints."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Response

from analysis import ranking
from api.auth import CallerDep
from api.deps import SessionDep, SettingsDep
from contract.autopilot import AutopilotRead, AutopilotSpec, LineageRead, OutcomesRead, OutcomeStat
from models.autopilot import outcomes, service
from models.autopilot.lineage import lineage
from models.jobs import service as jobs

router = APIRouter(tags=["autopilot"])


@router.post("/jobs/{job_id}/autopilot", status_code=201, response_model=AutopilotRead)
def start_autopilot(
    job_id: uuid.UUID,
    body: AutopilotSpec,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    response: Response,
) -> AutopilotRead:
    """Put a job under autopilot: when it ends, diagnose it and fork it with the best untried remedy, round after
    round. 409 when the job is already part of an autopilot lineage or was cancelled."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    ap = service.start(session=session, job=job, config=body, settings=settings)
    response.headers["Location"] = f"/jobs/{job_id}/lineage"
    return AutopilotRead.model_validate(ap)


@router.get("/jobs/{job_id}/lineage", response_model=LineageRead)
def get_lineage(job_id: uuid.UUID, session: SessionDep, settings: SettingsDep, caller: CallerDep) -> LineageRead:
    """The chain from the root: each job's diagnosis, the remedy its fork applied and the measured effect."""
    job = jobs.get_job(session=session, job_id=job_id, owner=caller.scope)
    return lineage(session=session, job=job, settings=settings)


@router.get("/remedies/outcomes", response_model=OutcomesRead)
def remedy_outcomes(
    session: SessionDep,
    caller: CallerDep,
    metric: Literal["val_accuracy", "val_loss", "accuracy", "loss"] | None = None,
) -> OutcomesRead:
    """Every recorded fork of this tenant, per (cause, remedy, metric): count, share improved, median gain."""
    items = [OutcomeStat(**row) for row in outcomes.aggregate(session, caller.scope, metric)]
    return OutcomesRead(
        items=items,
        ranking={
            "formula": "normal-normal posterior of the gain from first applications: "
            "mean = (prior(i)/sd^2 + n*mean_gain/var) / (1/sd^2 + n/var); the autopilot explores by mean + "
            f"{ranking.EXPLORE:g}*posterior sd",
            "prior": "prior_gain / (i + 1), i = the rule's order from 0; per metric",
            "priors": {m: vars(p) for m, p in ranking.PRIORS.items()},
            "prior_gain": ranking.PRIOR_GAIN,
            "k": ranking.K,
        },
    )
