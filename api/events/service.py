"""A job's event stream, read from the database: its job events and its epoch rows, in time order.

Every streamed item carries a cursor ``"<E>-<M>"``: the highest `job_events.id` (E) and the highest
epoch (M) sent so far, counting the item itself. Both parts only grow along a stream, so the id
of the last item a client received is enough to resume: the next stream starts with the job
events whose id is above E and the epochs above M, and nothing already sent comes again.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlmodel import select

from contract.epoch import EpochRead
from contract.status import TERMINAL_STATUSES
from models.db import session_scope
from models.tables import EpochMetric, Job, JobEvent

BATCH = 500
_CURSOR = re.compile(r"^(\d{1,18})-(\d{1,9})$")


@dataclass(frozen=True, order=True)
class Cursor:
    event: int = 0
    """Highest job event id sent."""
    epoch: int = 0
    """Highest epoch sent."""

    def __str__(self) -> str:
        return f"{self.event}-{self.epoch}"

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        """An id this stream issued; empty or absent starts from the beginning. Raises ValueError otherwise."""
        if raw is None or not raw.strip():
            return cls()
        match = _CURSOR.match(raw.strip())
        if match is None:
            raise ValueError(f"{raw!r} is not an event id of this stream (expected '<event id>-<epoch>', e.g. '12-3')")
        event, epoch = int(match.group(1)), int(match.group(2))
        if max(event, epoch) > _MAX_ID:  # ids and epochs are 32-bit columns
            raise ValueError(f"{raw!r} is not an event id of this stream (parts above {_MAX_ID})")
        return cls(event, epoch)


_MAX_ID = 2_147_483_647


@dataclass(frozen=True)
class Item:
    event: str
    """SSE event type: "epoch" for an epoch row, else the job event's kind ("state", "lr_reduced", …)."""
    data: str
    """JSON text."""
    cursor: Cursor


@dataclass
class Batch:
    status: str | None
    """The job's status, read before its rows; None when the job does not exist."""
    items: list[Item] = field(default_factory=list)
    complete: bool = True
    """False when more rows were waiting than one batch holds."""

    @property
    def finished(self) -> bool:
        """The job was terminal before the rows were read, and every row was read: nothing more will come."""
        return self.status in TERMINAL_STATUSES and self.complete


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)


def event_json(event: JobEvent) -> str:
    return json.dumps(
        {
            "id": event.id,
            "at": _utc(event.at).isoformat(),
            "kind": event.kind,
            "from_status": event.from_status,
            "to_status": event.to_status,
            "reason": event.reason,
            "data": event.data,
        }
    )


def fetch(job_id: uuid.UUID, after: Cursor, limit: int = BATCH) -> Batch:
    """The job's status, then its events and epochs after `after`, merged by time.

    The status is read first: when it is terminal, every row written before the job ended is
    visible to the reads that follow, so a terminal, complete batch is the end of the stream.
    """
    with session_scope() as s:
        status = s.exec(select(Job.status).where(Job.id == job_id)).first()
        if status is None:
            return Batch(status=None)
        events = list(
            s.exec(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after.event)
                .order_by(JobEvent.id)
                .limit(limit)
            ).all()
        )
        epochs = list(
            s.exec(
                select(EpochMetric)
                .where(EpochMetric.job_id == job_id, EpochMetric.epoch > after.epoch)
                .order_by(EpochMetric.epoch)
                .limit(limit)
            ).all()
        )

    # Rows past a truncated list's last timestamp wait for the next batch, so the merge stays in time order.
    cutoffs = [
        _utc(rows[-1].at if rows is events else rows[-1].recorded_at) for rows in (events, epochs) if len(rows) >= limit
    ]
    cutoff = min(cutoffs) if cutoffs else None

    items: list[Item] = []
    cursor, i, j = after, 0, 0
    while i < len(events) or j < len(epochs):
        take_event = j >= len(epochs) or (i < len(events) and _utc(events[i].at) <= _utc(epochs[j].recorded_at))
        at = _utc(events[i].at) if take_event else _utc(epochs[j].recorded_at)
        if cutoff is not None and at > cutoff:
            break
        if take_event:
            ev = events[i]
            i += 1
            cursor = Cursor(ev.id, cursor.epoch)
            items.append(Item(event=ev.kind, data=event_json(ev), cursor=cursor))
        else:
            row = epochs[j]
            j += 1
            cursor = Cursor(cursor.event, row.epoch)
            items.append(Item(event="epoch", data=EpochRead.model_validate(row).model_dump_json(), cursor=cursor))
    return Batch(status=status, items=items, complete=not cutoffs)
