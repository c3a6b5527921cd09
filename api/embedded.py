"""The embedded default: API and one worker on this machine, a SQLite file and a broker that needs no server.

`plateau-embedded --port 8000` (state lives under ./var unless PLATEAU_* variables say otherwise). The launcher
serves the API and supervises two children, the Celery worker and the reconciler, restarting either when it exits
(`api.embedded_worker`); a missing database whose WAL or artifacts show an earlier one stops it at start-up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import structlog
import uvicorn

from api import embedded_worker
from models.broker import filesystem_broker_folder
from models.db import ForgottenDatabase, prepare_database
from models.settings import get_settings

log = structlog.get_logger()


def _exit_on(signum: int, _frame) -> None:
    # uvicorn restores this handler after its own graceful shutdown and re-raises the signal: leaving by an
    # exception (not the default handler's instant death) lets `finally` stop the worker.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-worker", action="store_true", help="serve the API only")
    parser.add_argument(
        "--init-new-database",
        action="store_true",
        help="create an empty database although a WAL file or artifacts show an earlier one (PLATEAU_INIT_NEW_DATABASE)",
    )
    args = parser.parse_args(argv)
    if args.init_new_database:
        os.environ["PLATEAU_INIT_NEW_DATABASE"] = "true"
        get_settings.cache_clear()
    settings = get_settings()
    settings.data_root.mkdir(parents=True, exist_ok=True)
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    if settings.broker_url.startswith("filesystem://"):
        filesystem_broker_folder(settings)  # ready before /readyz is asked, even if a previous run's was deleted
    try:
        prepare_database()  # before the worker starts, so the two never race on the first migration
    except ForgottenDatabase as exc:
        raise SystemExit(f"plateau-embedded: {exc}") from None
    log.info(
        "embedded Plateau",
        database=settings.database_url,
        broker=settings.broker_url,
        data_root=str(settings.data_root.resolve()),
        url=f"http://{args.host}:{args.port}",
    )
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on)
    try:
        if not args.no_worker:
            embedded_worker.start(settings.queue)
        uvicorn.run("api.main:app", host=args.host, port=args.port, log_level="info")
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the worker's hand-back short
        embedded_worker.stop()


if __name__ == "__main__":
    sys.exit(main())
