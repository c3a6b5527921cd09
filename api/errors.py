"""Errors a client can act on: 404, 409, 422 with the field and the reason."""

import math
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from models.db import get_engine, note_unavailable, storage_unavailable
from models.lifecycle import IllegalTransition


class NotFound(Exception):
    def __init__(self, what: str):
        self.what = what


class Conflict(Exception):
    def __init__(self, detail: str):
        self.detail = detail


class LimitExceeded(Exception):
    """A per-tenant limit is reached (HTTP 429)."""

    def __init__(self, detail: str):
        self.detail = detail


class InvalidField(Exception):
    """A request that parsed but is invalid in context, reported like FastAPI's own 422s."""

    def __init__(self, errors: list[dict]):
        self.errors = errors


def field_error(loc: tuple[str, ...], msg: str, kind: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


ECHO_DEPTH = 8  # how deep a 422 echoes the offending input
ECHO_CHARS = 200  # how much of a long input string it echoes


def renderable(value: Any, depth: int = 0, cut: int | None = ECHO_CHARS) -> Any:
    """`value` as an error may echo it: JSON that any renderer accepts and, with `cut`, short.

    Errors echo the client's input (`input`, `ctx`); NaN, Infinity or a lone surrogate in it would make
    the error response itself fail with a 500.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value if cut is None or len(value) <= cut else value[:cut] + "…"
    if isinstance(value, (dict, list, tuple)):
        if depth >= ECHO_DEPTH:
            return "…"
        if isinstance(value, dict):
            return {str(renderable(k, depth + 1, cut)): renderable(v, depth + 1, cut) for k, v in value.items()}
        return [renderable(v, depth + 1, cut) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return renderable(str(value), depth, cut)  # exceptions in ctx, and anything else


def _error_items(errors: list[dict]) -> list[dict]:
    """Each error with its echoes made short and renderable, and everything else made renderable."""
    return [
        {k: renderable(v) if k in ("input", "ctx") else renderable(v, cut=None) for k, v in e.items()} for e in errors
    ]


RETRY_AFTER_SECONDS = 30  # when the database cannot take writes (disk full, read-only, I/O error, away)


def install(app: FastAPI) -> None:
    from api.auth import Unauthorized
    from api.json_body import refuse_hostile_json

    # On the app's router, so every route included after this runs it (main.py installs errors first).
    app.router.dependencies.append(Depends(refuse_hostile_json))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(_error_items(exc.errors()))})

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(status_code=401, content={"detail": exc.detail}, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(LimitExceeded)
    async def _limit(_: Request, exc: LimitExceeded) -> JSONResponse:
        return JSONResponse(status_code=429, content={"detail": exc.detail})

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": f"{exc.what} not found"})

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": exc.detail})

    @app.exception_handler(IllegalTransition)
    async def _illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        reason = storage_unavailable(exc)
        if reason is None:
            raise exc  # a bug, not the store: a 500 with its traceback in the log
        note_unavailable(get_engine(), reason)
        return JSONResponse(
            status_code=503,
            content={"detail": f"the database cannot take this request now ({reason}); retry later"},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(InvalidField)
    async def _invalid(_: Request, exc: InvalidField) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _error_items(exc.errors)})
