"""What follows every change of a job's state, registered in one place: `SUBSCRIBERS`.

`models.lifecycle` makes each change (a single conditional UPDATE or a row lock) and then publishes a `Transition`:
every subscriber runs, in order, inside the caller's transaction. What must wait for the commit (a webhook POST,
the autopilot's next round) is staged with `after_commit` and runs only once the change is stored; a rollback
drops it with the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from contract.status import TERMINAL_STATUSES
from models.tables import Job

log = structlog.get_logger()

_AFTER_COMMIT = "plateau.after_commit"


@dataclass(frozen=True)
class Transition:
    job_id: uuid.UUID
    from_status: str | None
    to_status: str
    reason: str | None
    data: dict[str, Any] | None = None
    webhook_data: dict[str, Any] | None = None
    job: Job | None = None  # when the caller holds it: spares a lookup

    @property
    def terminal(self) -> bool:
        return self.to_status in TERMINAL_STATUSES


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the caller's transaction commits; never if it rolls back."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def listen() -> None:
    """Start running the staged actions on commit. `models.lifecycle` calls this once its own commit listeners
    are in place, so a change's log line and webhook come before the actions (as they did when the worker
    advanced the autopilot by hand)."""
    if not event.contains(OrmSession, "after_commit", _run_after_commit):
        event.listen(OrmSession, "after_commit", _run_after_commit)
        event.listen(OrmSession, "after_transaction_end", _drop_after_commit)


def _run_after_commit(session: OrmSession) -> None:
    for action in session.info.pop(_AFTER_COMMIT, []):
        action()


def _drop_after_commit(session: OrmSession, transaction) -> None:
    if transaction.parent is None:  # rolled back or closed without a commit: nothing happened to follow up on
        session.info.pop(_AFTER_COMMIT, None)


def record_state_event(session: Session, change: Transition) -> None:
    """The state event row and the job's webhook delivery (the outbox row), in the same transaction. The
    jobs-by-state and transitions metrics are read from these rows at scrape time, so they need no subscriber."""
    from models.lifecycle import record_event  # lifecycle publishes the transitions; this is its one call back

    record_event(
        session,
        change.job_id,
        "state",
        from_status=change.from_status,
        to_status=change.to_status,
        reason=change.reason,
        data=change.data,
        webhook_data=change.webhook_data,
        job=change.job,
    )


def advance_autopilot(session: Session, change: Transition) -> None:
    """A job that ended: measure the fork that made it and advance its lineage, once the end is stored. Whatever
    fails here (it never raises) the reconciler's sweep catches up on."""
    if change.terminal:
        after_commit(session, lambda: _after_job_end(change.job_id))


def _after_job_end(job_id: uuid.UUID) -> None:
    from models.autopilot.hooks import after_job_end  # lazy: the autopilot loads only once a job ends

    after_job_end(job_id)


SUBSCRIBERS: list[Callable[[Session, Transition], None]] = [record_state_event, advance_autopilot]


def publish(session: Session, change: Transition) -> None:
    """The after-transition hook: every state change in `models.lifecycle` goes through here."""
    for subscriber in SUBSCRIBERS:
        subscriber(session, change)
