"""The in-process app on a SQLite file (the embedded default's database) instead of the session's PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _reload() -> None:
    from models.db import get_engine
    from models.settings import get_settings

    get_engine().dispose()
    get_engine.cache_clear()
    get_settings.cache_clear()


@contextmanager
def sqlite_client(home: Path) -> Iterator:
    """A TestClient of the same app whose database is `home/plateau.db`, migrated on start like the embedded
    deployment; the PostgreSQL settings come back afterwards."""
    from fastapi.testclient import TestClient

    from api.main import app

    before = os.environ["PLATEAU_DATABASE_URL"]
    os.environ["PLATEAU_DATABASE_URL"] = f"sqlite:///{home}/plateau.db"
    # a new database beside the session's shared artifacts folder, on purpose
    os.environ["PLATEAU_INIT_NEW_DATABASE"] = "true"
    _reload()
    try:
        with TestClient(app) as client:
            yield client
    finally:
        os.environ["PLATEAU_DATABASE_URL"] = before
        os.environ.pop("PLATEAU_INIT_NEW_DATABASE", None)
        _reload()
