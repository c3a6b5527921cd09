"""Engine, sessions and schema migrations."""

from __future__ import annotations

import os
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, event, exc, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from models.settings import Settings, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every Plateau process.
_MIGRATION_LOCK = 72_61_74_65


class UTCDateTime(TypeDecorator):
    """A timestamp that is always time-zone aware in Python, stored as UTC.

    PostgreSQL's timestamptz round-trips the zone; SQLite stores text without one and hands back naive
    values, which then fail every comparison with `utcnow()`. Both come back as aware UTC here."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class SchemaOutOfDate(RuntimeError):
    pass


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (plain or `file:` URI); None for other databases and in-memory ones."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        uri = urlparse(database)
        return None if "mode=memory" in uri.query else Path(uri.path)
    return Path(database)


class DatabaseFileGone(sqlite3.OperationalError):
    """The SQLite file this process opened was deleted or replaced: writing on would lose the data."""


class SQLiteFile:
    """The database file as this process first opened it (device and inode), to tell when it is no longer there."""

    def __init__(self, path: Path):
        self.path = path
        self.identity: tuple[int, int] | None = None

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def remember(self) -> None:
        if self.identity is None:
            self.identity = self._stat()

    def gone(self) -> str | None:
        """Why the file at the path is no longer the one this process opened; None before it opened one."""
        if self.identity is None:
            return None
        try:
            now = self._stat()
        except FileNotFoundError:
            return f"{self.path} was deleted while in use"
        except OSError:  # cannot tell (a permission change, say): let the connection itself fail or not
            return None
        return f"{self.path} was replaced by another file while in use" if now != self.identity else None

    def problem(self) -> str | None:
        """For readiness: why the file is not the database this process opened, or cannot be written."""
        if gone := self.gone():
            return gone
        if not self.path.exists():
            return f"{self.path} is missing"
        for target in (self.path, self.path.parent):  # the folder too: SQLite writes its -wal and -shm files there
            if not os.access(target, os.W_OK):
                return f"{target} is not writable"
        return None


_SQLITE_FILES: weakref.WeakKeyDictionary[Engine, SQLiteFile | None] = weakref.WeakKeyDictionary()


def sqlite_file(engine: Engine) -> SQLiteFile | None:
    """The SQLite file behind `engine`, for readiness; None for other databases."""
    return _SQLITE_FILES.get(engine)


def make_engine(url: str) -> Engine:
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        file = _SQLITE_FILES[engine] = SQLiteFile(path) if path is not None else None

        @event.listens_for(engine, "do_connect")
        def _refuse_a_new_file(dialect, conn_rec, cargs, cparams):
            # SQLite would silently create an empty file in place of a deleted one
            if file is not None and (why := file.gone()):
                raise DatabaseFileGone(f"{why}; restore it and restart Plateau")

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # API and worker share the file: WAL lets them read while one writes
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            if file is not None:
                file.remember()

        @event.listens_for(engine, "checkout")
        def _still_the_same_file(dbapi_conn, record, proxy):
            # a pooled connection still writes into the deleted file: drop it; the reconnect above then refuses
            if file is not None and file.gone():
                raise exc.DisconnectionError(file.gone())

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args={"connect_timeout": 5})


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@contextmanager
def session_scope() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def get_session() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config(get_engine())).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine | None = None) -> None:
    """Upgrade to the newest revision; concurrent starters wait on one another."""
    engine = engine or get_engine()
    cfg = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            try:
                command.upgrade(cfg, "head")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
    else:
        command.upgrade(cfg, "head")


def check_schema(engine: Engine | None = None) -> None:
    """Refuse to run against a schema older or newer than this code."""
    engine = engine or get_engine()
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at revision {current or 'none'}, this Plateau needs {head}: "
            "run `alembic upgrade head` or start with PLATEAU_MIGRATE_ON_START=true"
        )


class ForgottenDatabase(RuntimeError):
    pass


def refuse_to_forget(settings: Settings) -> None:
    """A missing SQLite file is created afresh only when nothing shows an earlier one (or when told to):
    a WAL file left beside it, or job folders in the artifacts folder, mean it was deleted or moved."""
    path = sqlite_path(settings.database_url)
    if path is None or path.exists() or settings.init_new_database:
        return
    signs = [str(p) for p in (path.with_name(path.name + "-wal"),) if p.exists()]
    if settings.artifacts_dir.is_dir() and any(settings.artifacts_dir.iterdir()):
        signs.append(f"{settings.artifacts_dir} (artifacts of earlier jobs)")
    if signs:
        raise ForgottenDatabase(
            f"the database file {path} is missing, but {' and '.join(signs)} show that it existed: restore it "
            "(for example from a backup), or start with PLATEAU_INIT_NEW_DATABASE=true "
            "(plateau-embedded --init-new-database) to begin with an empty database"
        )


_FAILURE_MEMORY = 30.0  # seconds readiness reports a request the database refused for want of storage
_last_failure: weakref.WeakKeyDictionary[Engine, tuple[float, str]] = weakref.WeakKeyDictionary()


_SQLITE_UNAVAILABLE = {
    5: "database is busy",  # SQLITE_BUSY, after busy_timeout
    8: "database is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "database or disk is full",  # SQLITE_FULL
    14: "database file cannot be opened",  # SQLITE_CANTOPEN
}


def storage_unavailable(error: BaseException) -> str | None:
    """Why a database error means the store cannot take writes now (disk full, read-only, I/O error,
    deleted file, server away) so the caller may retry later; None for any other error."""
    orig = getattr(error, "orig", error)
    if isinstance(orig, DatabaseFileGone):
        return str(orig)
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return _SQLITE_UNAVAILABLE.get(code & 0xFF)  # the primary result code
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith("53"):
        return f"database out of resources (disk full or similar, SQLSTATE {sqlstate})"
    if sqlstate.startswith("58") or sqlstate == "25006" or sqlstate.startswith("57P0"):
        return f"database cannot write now (read-only, I/O error or shutting down, SQLSTATE {sqlstate})"
    if isinstance(error, exc.OperationalError) and not sqlstate:  # PostgreSQL: no connection, or it was lost
        return "database unreachable"
    return None


def note_unavailable(engine: Engine, reason: str) -> None:
    _last_failure[engine] = (time.monotonic(), reason)


def recent_unavailable(engine: Engine) -> str | None:
    """The reason a request on `engine` failed for want of storage in the last 30 s, for readiness."""
    at, reason = _last_failure.get(engine, (0.0, ""))
    return reason if reason and time.monotonic() - at <= _FAILURE_MEMORY else None


def prepare_database() -> None:
    refuse_to_forget(get_settings())
    if get_settings().migrate_on_start:
        migrate()
    check_schema()
