"""The embedded launcher's children: its Celery worker and a reconciler, restarted whenever they exit.

A child that exits (a crash, kill -9, the OOM killer) is started again after a wait that doubles with each
quick exit, up to `PLATEAU_RESTART_BACKOFF_MAX_SECONDS`; every restart is logged and counted
(`plateau_embedded_restarts_total`). The reconciler runs as its own child, so leases are checked and lost
messages re-sent even while the worker is down; the worker then runs none of its own.

No child outlives the launcher, three ways: the launcher stops them on SIGTERM/SIGINT (`stop`), the kernel
sends them SIGTERM when the launcher dies however it dies (Linux `PR_SET_PDEATHSIG`), and each watches its
parent's pid (`worker.parent_watch`, for systems without prctl). SIGTERM makes the worker hand its job back."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import structlog

from api.observability.metrics import EMBEDDED_RESTARTS
from models.settings import get_settings

log = structlog.get_logger()

PARENT_ENV = "PLATEAU_PARENT_PID"
_PR_SET_PDEATHSIG = 1
STABLE_SECONDS = 60.0  # a child that ran this long before exiting starts the backoff again from its first wait


def worker_command(queue: str) -> list[str]:
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


def reconciler_command() -> list[str]:
    return [sys.executable, "-m", "worker.reconciler"]


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


def restart_wait(quick_exits: int, *, first: float, cap: float) -> float:
    """Seconds to wait before restarting a child after its `quick_exits`-th exit in a row: doubling, capped."""
    return min(cap, first * 2 ** (quick_exits - 1))


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_exits: int = 0  # exits in a row, each after less than STABLE_SECONDS: the backoff's exponent
    restart_at: float | None = None  # set while the child is down
    restarts: int = 0
    exit_code: int | None = None

    def start(self) -> None:
        # PR_SET_PDEATHSIG fires when the *thread* that started the child ends: restarts come from the supervisor
        # thread, which lives as long as the launcher and ends only in `stop`, which stops the children anyway.
        parent = os.getpid()
        env = {**os.environ, PARENT_ENV: str(parent), "PLATEAU_RECONCILE_IN_WORKER": "false"}
        self.process = subprocess.Popen(
            self.argv, env=env, preexec_fn=_die_with(parent) if sys.platform == "linux" else None
        )
        self.started_at, self.restart_at = time.monotonic(), None
        log.info("embedded child started", process=self.name, pid=self.process.pid)


@dataclass
class Supervisor:
    children: list[Child]
    backoff: float
    backoff_max: float
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for child in self.children:
            child.start()
        self._thread = threading.Thread(target=self._watch, name="embedded-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            for child in self.children:
                try:
                    self._look_after(child)
                except Exception as exc:  # noqa: BLE001 - e.g. fork failed (out of memory): try again later
                    log.error("embedded child restart failed", process=child.name, error=f"{type(exc).__name__}: {exc}")
                    child.restart_at = time.monotonic() + self.backoff_max

    def _look_after(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is None:
            code = child.process.poll()
            if code is None:
                return
            ran = now - child.started_at
            child.quick_exits = child.quick_exits + 1 if ran < STABLE_SECONDS else 1
            wait = restart_wait(child.quick_exits, first=self.backoff, cap=self.backoff_max)
            child.exit_code, child.restart_at = code, now + wait
            log.error("embedded child exited", process=child.name, code=code, ran_s=round(ran, 1), restart_in_s=wait)
        elif now >= child.restart_at and not self._stopping.is_set():
            child.restarts += 1
            EMBEDDED_RESTARTS.labels(process=child.name).inc()
            log.warning("embedded child restarting", process=child.name, restarts=child.restarts)
            child.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        live = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            log.info("embedded child stopped", pid=proc.pid, code=proc.returncode)


_supervisor: Supervisor | None = None


def start(queue: str) -> Supervisor:
    global _supervisor
    settings = get_settings()
    for name in ("worker", "reconciler"):
        EMBEDDED_RESTARTS.labels(process=name)  # exported as 0 from the start
    _supervisor = Supervisor(
        [Child("worker", worker_command(queue)), Child("reconciler", reconciler_command())],
        backoff=settings.restart_backoff_seconds,
        backoff_max=settings.restart_backoff_max_seconds,
    )
    _supervisor.start()
    return _supervisor


def stop(timeout: float = 120) -> None:
    """SIGTERM to every child: a running job stops at the next batch and is handed back; it resumes on the next start."""
    if _supervisor is not None:
        _supervisor.stop(timeout)


def problem() -> str | None:
    """For readiness: None when this process runs no worker of its own or when it is up."""
    if _supervisor is None:
        return None
    worker = _supervisor.children[0]
    if worker.restart_at is None and (worker.process is None or worker.process.poll() is None):
        return None
    code = worker.exit_code if worker.restart_at is not None else worker.process.poll()
    wait = max(0.0, (worker.restart_at or time.monotonic()) - time.monotonic())
    return f"embedded worker exited (code {code}); restart {worker.restarts + 1} in {wait:.0f} s"
