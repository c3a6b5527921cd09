"""The embedded default: API and one worker on this machine, a SQLite file and a broker that needs no server.

`plateau-embedded --port 8000` (state lives under ./var unless PLATEAU_* variables say otherwise).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import structlog
import uvicorn

from models.db import prepare_database
from models.settings import get_settings

log = structlog.get_logger()


def worker_command(queue: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "solo", "-c", "1",
            "-Q", queue, "-n", "embedded@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--without-heartbeat"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-worker", action="store_true", help="serve the API only")
    args = parser.parse_args(argv)
    settings = get_settings()
    settings.data_root.mkdir(parents=True, exist_ok=True)
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    prepare_database()  # before the worker starts, so the two never race on the first migration
    log.info("embedded Plateau", database=settings.database_url, broker=settings.broker_url,
             data_root=str(settings.data_root.resolve()), url=f"http://{args.host}:{args.port}")
    worker = None if args.no_worker else subprocess.Popen(worker_command(settings.queue))
    try:
        uvicorn.run("api.main:app", host=args.host, port=args.port, log_level="info")
    finally:
        if worker is not None:
            worker.terminate()  # SIGTERM: a running job is handed back and resumes on the next start
            try:
                worker.wait(120)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
