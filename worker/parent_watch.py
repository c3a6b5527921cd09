"""A worker started by the embedded launcher stops when the launcher is gone (pid reparented).

Backs up `PR_SET_PDEATHSIG`, which only Linux has and which a setuid exec would clear."""

from __future__ import annotations

import os
import signal
import threading
import time

import structlog

log = structlog.get_logger()


def watch_parent(parent: int, interval: float = 1.0, grace: float = 120.0) -> threading.Thread:
    def run() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("launcher gone; worker shutting down", launcher_pid=parent)
        os.kill(os.getpid(), signal.SIGTERM)  # warm shutdown: the running job is handed back
        time.sleep(grace)
        os._exit(1)

    thread = threading.Thread(target=run, name="parent-watch", daemon=True)
    thread.start()
    return thread
