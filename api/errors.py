"""Errors a client can act on: 404, 409, 422 with the field and the reason."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def install(app: FastAPI) -> None:
    from api.auth import Unauthorized

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

    @app.exception_handler(InvalidField)
    async def _invalid(_: Request, exc: InvalidField) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": exc.errors})
