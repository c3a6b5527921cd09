"""Real processes for tests: the API under uvicorn and Celery workers, each with its own environment
(started and awaited by `devtools.service`, which the benchmarks and scripts share)."""

from __future__ import annotations

import sys
from pathlib import Path

# what the tests import from here
from devtools.service import ROOT, Proc, free_port, http_ok, start_api, start_embedded, wait_for  # noqa: F401


def start_worker(env: dict[str, str], log: Path, name: str = "w1") -> Proc:
    args = [
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
        env.get("PLATEAU_QUEUE", "gpu"),
        "-n",
        f"{name}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    proc = Proc(args, env, log)
    wait_for(
        lambda: "ready." in proc.tail(100_000) or not proc.alive(), 90, lambda: f"worker did not start:\n{proc.tail()}"
    )
    assert proc.alive(), proc.tail()
    return proc


def embedded_env(home: Path, **extra: str) -> dict[str, str]:
    """The embedded default's settings with every piece of state (SQLite file, broker folder, artifacts) under `home`."""
    return {
        "PLATEAU_DATABASE_URL": f"sqlite:///{home}/plateau.db",
        "PLATEAU_BROKER_URL": "filesystem://",
        "PLATEAU_BROKER_DIR": str(home / "broker"),
        "PLATEAU_ARTIFACTS_DIR": str(home / "artifacts"),
        "PLATEAU_QUEUE": "gpu",
        **extra,
    }
