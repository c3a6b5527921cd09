"""One JSON log line and one latency observation per HTTP request."""

from __future__ import annotations

import re
import time
import uuid
from contextlib import nullcontext

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observability.metrics import REQUEST_SECONDS

log = structlog.get_logger()

_JOB_PATH = re.compile(r"^/jobs/([0-9A-Fa-f-]{32,36})(?:/|$)")
UNMATCHED = "unmatched"  # one label for every path no route knows, so scanners cannot inflate the series


def job_id_of(path: str) -> str | None:
    match = _JOB_PATH.match(path)
    if match is None:
        return None
    try:
        return str(uuid.UUID(match.group(1)))
    except ValueError:
        return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


class RequestObservability:
    """Pure ASGI, outermost: sees every answer, including 413s and unhandled errors (logged as 500)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        job_id = job_id_of(scope["path"])

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            # Log lines written while serving the request carry its job_id too.
            with structlog.contextvars.bound_contextvars(job_id=job_id) if job_id else nullcontext():
                await self.app(scope, receive, observe)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(seconds)
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
            if job_id:
                fields["job_id"] = job_id
            (log.error if status >= 500 else log.info)("request", **fields)
