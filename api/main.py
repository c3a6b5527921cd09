"""The FastAPI application."""

from __future__ import annotations

from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from api import errors, health
from api.analysis.routes import router as analysis_router
from api.artifacts.routes import router as artifacts_router
from api.autopilot.routes import router as autopilot_router
from api.body_limit import BodyLimit
from api.dashboard import router as dashboard_router
from api.events.routes import router as events_router
from api.jobs.routes import router as jobs_router
from api.observability.middleware import RequestObservability
from api.observability.routes import router as observability_router
from api.probes.routes import router as probes_router
from models.db import prepare_database
from models.logs import configure_logging
from models.settings import get_settings

log = structlog.get_logger()


@asynccontextmanager
async def lifespan(_: FastAPI):
    prepare_database()
    if not get_settings().auth_enabled:
        log.warning(
            "authentication is OFF: every caller acts as an admin of tenant 'default'; "
            "set PLATEAU_AUTH_ENABLED=true and issue keys with `python -m api.keys create`"
        )
    yield


def create_app() -> FastAPI:
    configure_logging()
    app = FastAPI(
        title="Plateau",
        version="0.1.0",
        lifespan=lifespan,
        description="Inception-V3 training jobs with explainable stagnation diagnoses.",
    )
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestObservability)  # outermost: logs and times every answer, 413s included
    app.include_router(health.router)
    app.include_router(jobs_router)
    app.include_router(analysis_router)
    app.include_router(autopilot_router)
    app.include_router(events_router)
    app.include_router(artifacts_router)
    app.include_router(probes_router)
    app.include_router(observability_router)
    app.include_router(dashboard_router)
    return app


app = create_app()
