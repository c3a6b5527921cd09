"""The FastAPI application."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, health
from api.analysis.routes import router as analysis_router
from api.jobs.routes import router as jobs_router
from models.db import prepare_database
from models.logs import configure_logging


@asynccontextmanager
async def lifespan(_: FastAPI):
    prepare_database()
    yield


def create_app() -> FastAPI:
    configure_logging()
    app = FastAPI(title="Plateau", version="0.1.0", lifespan=lifespan,
                  description="Inception-V3 training jobs with explainable stagnation diagnoses.")
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs_router)
    app.include_router(analysis_router)
    return app


app = create_app()
