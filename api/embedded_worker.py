"""The embedded launcher's Celery worker: started as a child that cannot outlive the launcher.

Three layers, so no way of stopping the launcher leaves a worker consuming the broker folder:
the launcher stops it on SIGTERM/SIGINT (`stop`), the kernel sends it SIGTERM when the launcher dies
however it dies (Linux `PR_SET_PDEATHSIG`), and the worker itself watches its parent's pid
(`worker.parent_watch`, for systems without prctl). SIGTERM makes the worker hand its job back."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

import structlog

log = structlog.get_logger()

PARENT_ENV = "PLATEAU_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_process: subprocess.Popen | None = None


def command(queue: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-P",
        "solo",
        "-c",
        "1",
        "-Q",
        queue,
        "-n",
        "embedded@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def _die_with(parent: int):
    def preexec() -> None:  # runs in the child between fork and exec
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the parent watch covers it
            pass
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec


def start(queue: str) -> subprocess.Popen:
    global _process
    parent = os.getpid()
    _process = subprocess.Popen(
        command(queue),
        env={**os.environ, PARENT_ENV: str(parent)},
        preexec_fn=_die_with(parent) if sys.platform == "linux" else None,
    )
    log.info("embedded worker started", pid=_process.pid)
    return _process


def stop(timeout: float = 120) -> None:
    """SIGTERM: a running job stops at the next batch and is handed back; it resumes on the next start."""
    proc = _process
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    log.info("embedded worker stopped", pid=proc.pid, code=proc.returncode)


def problem() -> str | None:
    """For readiness: None when this process runs no worker of its own or when it is alive."""
    if _process is None:
        return None
    code = _process.poll()
    return None if code is None else f"embedded worker exited (code {code})"
