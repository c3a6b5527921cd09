"""A probe's wall-clock budget, which a cancel request or a worker shutdown also ends."""

from __future__ import annotations

import threading
import time


class Budget:
    def __init__(self, seconds: float, stop: threading.Event | None = None):
        self.seconds = seconds
        self.stop = stop or threading.Event()
        self.started = time.perf_counter()
        self.truncated = False  # set once a probe stopped early because of this budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def over(self) -> bool:
        """True once the time is up or a stop was asked for; a probe checks this between steps."""
        if self.stop.is_set() or self.elapsed() >= self.seconds:
            self.truncated = True
            return True
        return False
