"""The webhook outbox: rows in `webhook_deliveries`, written with the change they report and sent later.

`stage` is what the lifecycle's after-transition hook calls, inside the caller's transaction: the change and
its delivery commit together or not at all, and a crash after the commit loses nothing, because the row waits
in the database until a sender (`models.webhooks.sender`) claims it. A claim is a lease (`claimed_until`): a
sender that dies mid-delivery leaves a row that another sender takes again once the lease lapses, so delivery
is at least once; receivers drop repeats by `X-Plateau-Delivery`, which stays the same on every try.

No HTTP here: this module loads in every process that changes a job.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import ValidationError
from sqlalchemy import and_, or_, update
from sqlmodel import Session, select

from contract.webhook import WebhookSpec
from models.tables import Job, WebhookDelivery, utcnow
from models.webhooks import signing

log = structlog.get_logger()

PENDING, SENDING, DELIVERED, DEAD = "pending", "sending", "delivered", "dead"


def target_of(url: str) -> str:
    """The unit of per-target concurrency: scheme, host and port, so one slow receiver holds only its own slots."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"[:300]


def stage(
    session: Session,
    job: Job | None,
    event: str,
    *,
    status: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> WebhookDelivery | None:
    """Add the delivery of `event` to the caller's transaction, when `job` has a webhook that wants it."""
    raw = (job.spec or {}).get("webhook") if job is not None else None
    if not raw:
        return None
    try:
        hook = WebhookSpec.model_validate(raw)
    except ValidationError as exc:  # checked at submit; if a stored spec is off anyway, the job must not fail for it
        log.warning("webhook not staged: stored target invalid", job_id=str(job.id), error=str(exc)[:500])
        return None
    if not hook.wants(event):
        return None
    row = WebhookDelivery(
        job_id=job.id,
        owner=job.owner,
        url=hook.url,
        target=target_of(hook.url),
        event=event,
        # stored as it will be sent: anything JSON cannot hold is already text here, never a failed transition
        body=json.loads(signing.encode(signing.payload(event, job.id, status, at or utcnow(), data))),
        delivery_id=uuid.uuid4().hex,
    )
    session.add(row)
    return row


def _due(now: datetime):
    return or_(
        and_(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.state == SENDING, WebhookDelivery.claimed_until < now),  # its sender died
    )


@dataclass
class Slots:
    """Tries in flight in one sender, by target and by tenant, and the most it allows of each: a receiver that
    never answers holds its target's slots, a tenant with many such receivers holds its own share, no more."""

    per_target: int
    per_owner: int
    targets: Counter[str] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)

    def take(self, target: str, owner: str) -> bool:
        if self.targets[target] >= self.per_target or self.owners[owner] >= self.per_owner:
            return False
        self.targets[target] += 1
        self.owners[owner] += 1
        return True

    def give_back(self, target: str, owner: str) -> None:
        self.targets[target] -= 1
        self.owners[owner] -= 1
        self.targets, self.owners = +self.targets, +self.owners  # drop the zeros

    def copy(self) -> Slots:
        return Slots(self.per_target, self.per_owner, Counter(self.targets), Counter(self.owners))


def claim(session: Session, *, limit: int, lease_seconds: float, slots: Slots | None = None) -> list[WebhookDelivery]:
    """Take up to `limit` due rows, oldest first, that fit in `slots` (not changed: the caller takes the slots of
    what it got); each is leased for `lease_seconds`. Commits.

    PostgreSQL: candidates are locked with FOR UPDATE SKIP LOCKED, so concurrent senders never wait on one
    another. SQLite: the conditional UPDATE below is the claim (one writer at a time, and a row another
    sender took meanwhile no longer matches). Rows of a full target or tenant are not even read: they wait.
    """
    now = utcnow()
    room = slots.copy() if slots is not None else None
    query = select(WebhookDelivery.id, WebhookDelivery.target, WebhookDelivery.owner).where(_due(now))
    if room is not None:
        full_targets = [t for t, n in room.targets.items() if n >= room.per_target]
        full_owners = [o for o, n in room.owners.items() if n >= room.per_owner]
        if full_targets:
            query = query.where(WebhookDelivery.target.not_in(full_targets))
        if full_owners:
            query = query.where(WebhookDelivery.owner.not_in(full_owners))
    query = query.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit * 4)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    chosen: list[int] = []
    for row_id, target, owner in session.exec(query).all():
        if len(chosen) >= limit:
            break
        if room is None or room.take(target, owner):
            chosen.append(row_id)
    if not chosen:
        session.rollback()
        return []
    taken = (
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(chosen), _due(now))
            .values(state=SENDING, claimed_until=now + timedelta(seconds=lease_seconds))
            .returning(WebhookDelivery.id)
        )
        .scalars()
        .all()
    )
    session.commit()
    if not taken:
        return []
    return list(session.exec(select(WebhookDelivery).where(WebhookDelivery.id.in_(taken))).all())


def record_try(
    session: Session,
    row_id: int,
    *,
    ok: bool,
    retry: bool,
    status_code: int | None,
    error: str | None,
    max_attempts: int,
    backoff_seconds: float,
    max_backoff_seconds: float,
) -> str:
    """Store how one try went: delivered, retried later (exponential backoff), or dead. Returns the new state."""
    row = session.get(WebhookDelivery, row_id)
    now = utcnow()
    row.attempts += 1
    row.last_status = status_code
    row.last_error = error[:2000] if error else None
    row.claimed_until = None
    if ok:
        row.state, row.delivered_at = DELIVERED, now
    elif retry and row.attempts < max_attempts:
        wait = min(backoff_seconds * 2 ** (row.attempts - 1), max_backoff_seconds)
        row.state, row.next_attempt_at = PENDING, now + timedelta(seconds=wait)
    else:
        row.state = DEAD
    session.add(row)
    session.commit()
    return row.state
