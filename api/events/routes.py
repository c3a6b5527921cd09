"""GET /jobs/{id}/events: the job's events and epoch rows as Server-Sent Events."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.auth import CallerDep
from api.deps import SessionDep
from api.errors import InvalidField
from api.events import service
from api.events.service import Cursor
from models.jobs import service as jobs

router = APIRouter(prefix="/jobs", tags=["events"])

PING_SECONDS = 15


async def stream(job_id: uuid.UUID, cursor: Cursor, poll: float) -> AsyncIterator[ServerSentEvent]:
    """Poll the database; send what is new; after the job is terminal and all is sent, send `end` and stop."""
    while True:
        batch = await anyio.to_thread.run_sync(service.fetch, job_id, cursor)
        for item in batch.items:
            cursor = item.cursor
            yield ServerSentEvent(data=item.data, event=item.event, id=str(cursor))
        if batch.status is None:
            return
        if batch.finished:
            yield ServerSentEvent(data=json.dumps({"status": batch.status}), event="end", id=str(cursor))
            return
        if batch.complete:
            await anyio.sleep(poll)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`state`, `epoch`, `lr_reduced`, `finding`, … events, then `end`.",
        }
    },
)
def job_events(
    job_id: uuid.UUID,
    session: SessionDep,
    caller: CallerDep,
    poll: Annotated[float, Query(ge=0.05, le=30, description="Seconds between database polls.")] = 0.5,
    after: Annotated[str | None, Query(description="Resume after this event id (same as Last-Event-ID).")] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id.")] = None,
) -> EventSourceResponse:
    """Stream the job's events and epoch rows in the order they were recorded, ending after the job is terminal.

    Each event's `id` is `"<E>-<M>"`: the highest job event id and the highest epoch sent so far.
    Reconnect with it as `Last-Event-ID` (or `?after=`) to get only what came after.
    """
    raw = last_event_id if last_event_id is not None else after
    try:
        cursor = Cursor.parse(raw)
    except ValueError as exc:
        loc = ["header", "last-event-id"] if last_event_id is not None else ["query", "after"]
        raise InvalidField([{"loc": loc, "msg": str(exc), "type": "value_error"}]) from exc
    jobs.get_job(session=session, job_id=job_id, owner=caller.scope)  # 404 for a job this caller may not see
    session.close()  # the stream polls with short sessions of its own; hold no connection while it is open
    return EventSourceResponse(stream(job_id, cursor, poll), ping=PING_SECONDS)
