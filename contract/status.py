"""A job's states, declared once: the API, the webhook events, the table's enum and the client all read these."""

from __future__ import annotations

from typing import Literal, get_args

ActiveStatus = Literal["queued", "running"]
TerminalStatus = Literal["succeeded", "failed", "cancelled"]
JobStatusName = Literal[ActiveStatus, TerminalStatus]
"""queued → running → succeeded | failed | cancelled (a running job may go back to queued when its worker is lost)."""

JOB_STATUSES: tuple[str, ...] = get_args(JobStatusName)
TERMINAL_STATUSES: frozenset[str] = frozenset(get_args(TerminalStatus))
