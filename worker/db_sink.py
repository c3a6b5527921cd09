"""The worker's sink: every report goes to SQL at once, retried with backoff while the database is away.

Each write carries the worker's fence (the attempt it claimed) and is refused once the attempt no longer owns
the job; the sink then raises LostJob for this and every later report, which ends training for good."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from models.db import session_scope
from models.lifecycle import Fence, LostJob, hold, record_event, upsert_epoch
from models.tables import Job, ValPredictions

log = structlog.get_logger()


def _log_retry(state) -> None:
    log.warning(
        "database write failed; retrying", attempt=state.attempt_number, error=type(state.outcome.exception()).__name__
    )


# A database outage shorter than this loses no epoch: the training thread waits for it.
db_retry = retry(
    retry=retry_if_exception_type((OperationalError, DBAPIError)),
    wait=wait_exponential(multiplier=0.5, max=15),
    stop=stop_after_delay(600),
    before_sleep=_log_retry,
    reraise=True,
)


class DbSink:
    def __init__(self, fence: Fence):
        self.fence = fence
        self.job_id = fence.job_id
        self.lost: LostJob | None = None

    def _refused(self, exc: LostJob) -> LostJob:
        self.lost = exc
        log.warning("write refused: the job is no longer this attempt's", job_id=str(self.job_id), error=str(exc))
        return exc

    def _check(self) -> None:
        if self.lost is not None:
            raise self.lost

    @db_retry
    def class_counts(self, counts: dict[str, dict[str, int]]) -> None:
        self._check()
        with session_scope() as s:
            try:
                hold(s, self.fence)
            except LostJob as exc:
                raise self._refused(exc) from None
            s.execute(update(Job).where(Job.id == self.job_id).values(class_counts=counts))
            s.commit()

    @db_retry
    def epoch(self, row: dict[str, Any]) -> None:
        self._check()
        with session_scope() as s:
            try:
                upsert_epoch(s, self.job_id, row, fence=self.fence)
            except LostJob as exc:
                raise self._refused(exc) from None
        log.info(
            "epoch recorded",
            job_id=str(self.job_id),
            epoch=row["epoch"],
            val_accuracy=row.get("val_accuracy"),
            val_loss=row.get("val_loss"),
        )

    def stalled(self, epoch: int, probes: list[str], budget_seconds: int) -> None:
        """A stall was first detected: queue the spec's probes (once per job). Never stops training."""
        from models import probes as probe_rows

        if self.lost is not None:
            return
        try:
            with session_scope() as s:
                hold(s, self.fence)  # only while this attempt owns the job
                job = s.get(Job, self.job_id)
                queued = probe_rows.request(s, job=job, names=probes, budget_seconds=budget_seconds, trigger="stall")
            log.info("probes queued on a stall", job_id=str(self.job_id), epoch=epoch, probes=[p.name for p in queued])
        except Exception as exc:  # noqa: BLE001 - probes are advice: training goes on without them
            log.warning("could not queue probes", job_id=str(self.job_id), error=f"{type(exc).__name__}: {exc}")

    @db_retry
    def event(self, kind: str, reason: str, data: dict[str, Any] | None = None) -> None:
        self._check()
        with session_scope() as s:
            try:
                # a finding also goes to the webhook
                record_event(s, self.job_id, kind, reason=reason, data=data, fence=self.fence)
            except LostJob as exc:
                raise self._refused(exc) from None
            s.commit()

    @db_retry
    def predictions(self, stored: dict[str, Any]) -> None:
        self._check()
        with session_scope() as s:
            try:
                hold(s, self.fence)
            except LostJob as exc:
                raise self._refused(exc) from None
            s.merge(ValPredictions(job_id=self.job_id, epoch=stored["epoch"], stored=stored))  # one row a job
            s.commit()
