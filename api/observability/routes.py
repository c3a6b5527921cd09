"""GET /metrics in Prometheus' text format."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import Unauthorized
from api.deps import SettingsDep
from api.observability.metrics import REGISTRY

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
)
def metrics(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Request latency, jobs by state, epoch rows, training throughput, queue depth (see docs/observability.md)."""
    token = settings.metrics_token
    if token is not None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()
        ):
            raise Unauthorized("GET /metrics needs Authorization: Bearer <PLATEAU_METRICS_TOKEN>")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
