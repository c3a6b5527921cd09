"""The two deployments as fault and soak tests drive them: start, kill the worker, bring a worker back, and find
leftover processes. Every process started here carries a tag in its environment, so a test finds its own
processes (and orphans) in /proc without touching anyone else's."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import httpx

from tests.conftest import new_database_url
from tests.procs import ROOT, Proc, free_port, start_api, start_worker, wait_for

TAG = "PLATEAU_TEST_TAG"


def fast_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "PLATEAU_LEASE_SECONDS": "6",
        "PLATEAU_RECONCILE_INTERVAL": "1",
        "PLATEAU_CANCEL_POLL_SECONDS": "0.5",
        "PLATEAU_REQUEUE_AFTER": "3",
        "PLATEAU_ARTIFACTS_DIR": str(tmp / "artifacts"),
        TAG: uuid.uuid4().hex,
        **extra,
    }


def tagged_pids(tag: str) -> list[int]:
    """Live processes whose environment carries this tag (zombies excluded: they are dead, only unreaped)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"{TAG}={tag}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except OSError:
            continue
        pids.append(int(entry.name))
    return pids


def children(pid: int) -> list[int]:
    """Children of every thread of `pid` (the launcher restarts its worker from a thread of its own)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Embedded:
    """`plateau-embedded`: API and worker under one launcher, a SQLite file, kombu's filesystem broker.
    It runs in its own folder, so anything it writes to its current directory shows up there."""

    name = "embedded"

    def __init__(self, tmp: Path, **extra: str):
        self.tmp, self.home = tmp, tmp / "home"
        self.cwd = tmp / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = fast_env(
            tmp,
            **{
                "PLATEAU_DATABASE_URL": f"sqlite:///{self.home}/plateau.db",
                "PLATEAU_BROKER_URL": "filesystem://",
                "PLATEAU_BROKER_DIR": str(self.home / "broker"),
                "PLATEAU_QUEUE": "gpu",
                "PYTHONPATH": str(ROOT),
                **extra,
            },
        )
        self.launcher: Proc | None = None
        self.url = ""
        self.starts = 0

    def start(self, *args: str) -> None:
        self.starts += 1
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.launcher = Proc(
            [sys.executable, "-m", "api.embedded", "--port", str(port), *args],
            self.env,
            self.tmp / f"embedded-{self.starts}.log",
            cwd=self.cwd,
        )
        wait_for(lambda: self.ready() or not self.launcher.alive(), 120, self.logs)
        assert self.launcher.alive(), self.logs()
        if "--no-worker" not in args:
            wait_for(lambda: "ready." in self.launcher.tail(1_000_000), 120, self.logs)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def worker_pid(self) -> int:
        """The launcher's Celery worker (its other child is the reconciler); a worker just restarted may need
        a moment to exec."""

        def celery_children():
            kids = [k for k in children(self.launcher.p.pid) if b"celery" in _cmdline(k)]
            return kids if len(kids) == 1 else None

        return wait_for(celery_children, 10, lambda: f"no single worker child\n{self.logs()}")[0]

    def kill_worker(self) -> None:
        os.kill(self.worker_pid(), signal.SIGKILL)

    def signal_launcher(self, sig: int) -> None:
        """The launcher alone, as `kill` or a supervisor would: not its process group."""
        os.kill(self.launcher.p.pid, sig)
        self.launcher.p.wait(150)

    def restart_worker(self) -> None:
        """A new launcher, and with it a new worker (the launcher also restarts a dead worker itself, after a
        backoff: `tests/test_embedded_recovery.py`)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.launcher is not None and self.launcher.alive():
            self.signal_launcher(signal.SIGTERM)
        if self.launcher is not None:
            self.launcher.stop()

    def leftovers(self) -> list[int]:
        return tagged_pids(self.env[TAG])

    def logs(self, n: int = 6000) -> str:
        return self.launcher.tail(n) if self.launcher else ""

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("embedded-*.log")))


class Separate:
    """PostgreSQL + Redis with the API and the Celery worker as separate processes (the compose shape)."""

    name = "postgres-redis"

    def __init__(self, tmp: Path, **extra: str):
        self.tmp = tmp
        self.env = fast_env(
            tmp,
            **{
                "PLATEAU_DATABASE_URL": new_database_url(),
                "PLATEAU_BROKER_URL": os.environ["PLATEAU_BROKER_URL"],
                "PLATEAU_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
                **extra,
            },
        )
        self.api_proc: Proc | None = None
        self.worker: Proc | None = None
        self.url = ""
        self.starts = 0

    def start(self) -> None:
        self.api_proc, self.url = start_api(self.env, self.tmp / "api.log")
        self.start_worker()

    def start_worker(self) -> None:
        self.starts += 1
        self.worker = start_worker(self.env, self.tmp / f"worker-{self.starts}.log", name=f"w{self.starts}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def kill_worker(self) -> None:
        self.worker.kill(signal.SIGKILL)
        self.worker.p.wait(10)

    def restart_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.start_worker()

    def stop(self) -> None:
        for proc in (self.worker, self.api_proc):
            if proc is not None:
                proc.stop()

    def leftovers(self) -> list[int]:
        return tagged_pids(self.env[TAG])

    def logs(self, n: int = 6000) -> str:
        return self.worker.tail(n) if self.worker else ""

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("worker-*.log")))
