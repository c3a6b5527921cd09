"""Start Plateau's processes and wait until they answer: one helper for tests, benchmarks and scripts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child in its own process group (so stopping it stops its children too), logging to `log`."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT):
        self.log = log
        self._fh = open(log, "ab")
        self.p = subprocess.Popen(
            args, cwd=cwd, env={**os.environ, **env}, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.p.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.p.wait(10)
        self._fh.close()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(cond, timeout: float, message=lambda: "timed out", interval: float = 0.5):
    """Poll `cond` until it returns something true (returned), or raise AssertionError(message()) at `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message())


def wait_ready(url: str, proc: Proc, timeout: float = 120, path: str = "/readyz") -> None:
    """Until `url + path` answers 200; fails at once, with the log's tail, when the process exits first."""
    wait_for(
        lambda: http_ok(url + path) or not proc.alive(),
        timeout,
        lambda: f"{url} not ready after {timeout:.0f} s:\n{proc.tail()}",
    )
    if not proc.alive():
        raise AssertionError(f"the service exited with {proc.p.returncode}:\n{proc.tail()}")


def start_api(
    env: dict[str, str], log: Path, *, workers: int = 1, path: str = "/livez", timeout: float = 60
) -> tuple[Proc, str]:
    """The API under uvicorn on a free port; returns once `path` answers."""
    port = free_port()
    proc = Proc(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        env,
        log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, timeout, path)
    return proc, url


def start_embedded(
    env: dict[str, str], log: Path, *, port: int | None = None, timeout: float = 120
) -> tuple[Proc, str]:
    """`plateau-embedded` (the API and its own worker) on `port` or a free one; returns once /readyz answers."""
    port = port or free_port()
    proc = Proc([sys.executable, "-m", "api.embedded", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, timeout)
    return proc, url
