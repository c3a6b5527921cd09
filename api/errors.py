"""Errors a client can act on: 404, 409, 422 with the field and the reason."""

import math
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from models.db import get_engine, note_unavailable, storage_unavailable
from models.errors import Conflict, InvalidField, LimitExceeded, NotFound, field_error
from models.lifecycle import IllegalTransition

__all__ = ["Conflict", "InvalidField", "LimitExceeded", "NotFound", "field_error", "install", "renderable"]


ECHO_DEPTH = 8  # how deep a 422 echoes the offending input
ECHO_CHARS = 200  # how much of a long input string (or key, or `loc` entry) it echoes
MESSAGE_CHARS = 2000  # a message is ours, but may quote input: bounded too


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
    return [{k: _rendered(k, v) for k, v in e.items()} for e in errors]


def _rendered(field: str, value: Any) -> Any:
    if field in ("input", "ctx"):
        return renderable(value)
    if field == "loc":  # a key of the client's input is input too: a 100 KB key is not echoed whole
        return [renderable(part) for part in value]
    return renderable(value, cut=MESSAGE_CHARS)


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
