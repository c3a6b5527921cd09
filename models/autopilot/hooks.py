"""Entry points for the worker: after a job ends, and the periodic sweep. Neither may ever raise."""

from __future__ import annotations

import uuid

import structlog

log = structlog.get_logger()


def after_job_end(job_id: uuid.UUID) -> None:
    """Measure the fork that made this job and advance its lineage; the sweep retries whatever fails here."""
    try:
        from models.autopilot.service import job_ended
        from models.db import session_scope

        with session_scope() as s:
            job_ended(s, job_id)
    except Exception as exc:  # noqa: BLE001 - the job's own end is already recorded; the sweep catches up
        log.warning("autopilot step after job end failed", job_id=str(job_id), error=f"{type(exc).__name__}: {exc}")


def sweep_safely() -> dict[str, int]:
    try:
        from models.autopilot.service import sweep
        from models.db import session_scope

        with session_scope() as s:
            counts = sweep(s)
        if any(counts.values()):
            log.info("autopilot sweep", **counts)
        return counts
    except Exception as exc:  # noqa: BLE001 - never breaks the reconcile pass; next pass tries again
        log.warning("autopilot sweep failed", error=f"{type(exc).__name__}: {exc}")
        return {}


def after_probe_end(trigger: str) -> None:
    """A probe the autopilot requested has ended: the lineage waiting on it decides now, not at the next sweep."""
    if trigger == "autopilot":
        sweep_safely()
