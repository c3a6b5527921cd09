"""Keeps a running job's lease alive and carries cancel requests from the database to the training loop."""

from __future__ import annotations

import threading

import structlog

from models.db import session_scope
from models.lifecycle import Fence, renew_lease

log = structlog.get_logger()


class Heartbeat(threading.Thread):
    def __init__(self, fence: Fence, *, lease_seconds: float, poll_seconds: float, stop: threading.Event):
        super().__init__(name=f"heartbeat-{fence.job_id}", daemon=True)
        self.fence, self.job_id, self.lease_seconds = fence, fence.job_id, lease_seconds
        self.interval = min(poll_seconds, lease_seconds / 3)
        self.stop_training = stop
        self.lost = threading.Event()  # the lease was taken from us: stop, another worker owns the job
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with session_scope() as s:
                    state = renew_lease(
                        s,
                        self.job_id,
                        worker_host=self.fence.worker_host,
                        attempt=self.fence.attempt,
                        lease_seconds=self.lease_seconds,
                    )
            except Exception as exc:  # noqa: BLE001 - a database blip must not kill training; the lease has slack
                log.warning("lease renewal failed", job_id=str(self.job_id), error=str(exc))
                continue
            if state is None:
                self.lost.set()
                self.stop_training.set()
            elif state:
                self.stop_training.set()

    def close(self) -> None:
        self._done.set()
