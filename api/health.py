"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import embedded_worker
from api.deps import SettingsDep
from models.artifacts import space_problem
from models.db import get_engine, recent_unavailable, sqlite_file
from models.settings import Settings

router = APIRouter(tags=["health"])


def database_ok() -> str | None:
    """It answers, it is still the SQLite file this process opened and can be written, and no write failed
    for want of storage just now."""
    file = sqlite_file(get_engine())
    if file is not None and (problem := file.problem()):
        return problem
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"database unreachable: {type(exc).__name__}"
    if failure := recent_unavailable(get_engine()):
        return f"a request failed just now: {failure}"
    return None


def broker_ok(settings: Settings) -> str | None:
    url = settings.broker_url
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
        elif url.startswith("filesystem://"):
            folder = settings.broker_dir / "queue"
            if not folder.is_dir():
                return f"broker unreachable: {folder} is missing"
        else:
            from models.broker import producer

            with producer(settings).connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        return None
    except Exception as exc:  # noqa: BLE001
        return f"broker unreachable: {type(exc).__name__}"


@router.get("/livez")
def livez() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep) -> JSONResponse:
    """The database and the broker answer, and the embedded launcher's worker is alive; 503 naming whichever is not."""
    checks = (("database", database_ok()), ("broker", broker_ok(settings)), ("worker", embedded_worker.problem()))
    checks += (("artifacts", space_problem(settings.artifacts_dir, settings.min_free_artifacts_bytes)),)
    problems = {name: p for name, p in checks if p}
    if problems:
        return JSONResponse(status_code=503, content={"status": "unavailable", "failing": problems})
    return JSONResponse(content={"status": "ok"})
