"""What every benchmark shares: where PostgreSQL and Redis are, starting the service (always through
`devtools.service`, as the tests do), the machine's facts and what else kept the CPU busy while a figure was taken.

PostgreSQL and Redis are the ones the test suite uses (127.0.0.1:5432 `test` with trust auth, 127.0.0.1:6379);
`PLATEAU_BENCH_PG_ADMIN` and `PLATEAU_BENCH_REDIS` name others.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devtools.service import ROOT, Proc, free_port, http_ok, start_api, start_embedded, wait_for

__all__ = [
    "PG_ADMIN",
    "REDIS_URL",
    "ROOT",
    "Proc",
    "busy_processes",
    "create_database",
    "database_url",
    "drop_database",
    "drop_queue",
    "embedded_env",
    "service_url",
    "free_port",
    "http_ok",
    "load_average",
    "machine",
    "start_api",
    "start_embedded_service",
    "summary",
    "timed",
    "wait_for",
    "work_dir",
]

PG_ADMIN = os.environ.get("PLATEAU_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
"""A database to connect to as a user that may create and drop databases."""
REDIS_URL = os.environ.get("PLATEAU_BENCH_REDIS", "redis://127.0.0.1:6379/12")


# -- PostgreSQL and Redis ----------------------------------------------------------------------------------------------


def create_database(name: str, admin: str = PG_ADMIN) -> str:
    """A fresh database on the admin URL's server; returns its libpq URL (`service_url` for the service's)."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name, admin)


def database_url(name: str, admin: str = PG_ADMIN) -> str:
    """The libpq URL of database `name` on the admin URL's server."""
    return admin.rsplit("/", 1)[0] + f"/{name}"


def service_url(libpq_url: str) -> str:
    """The SQLAlchemy URL the service takes (`PLATEAU_DATABASE_URL`) for a libpq URL."""
    return libpq_url.replace("postgresql://", "postgresql+psycopg://")


def drop_database(name: str, admin: str = PG_ADMIN) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_queue(queue: str, redis_url: str = REDIS_URL) -> None:
    """The queue, and the exchange bindings kombu keeps for it."""
    import redis

    redis.Redis.from_url(redis_url).delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


# -- the service -------------------------------------------------------------------------------------------------------


def work_dir(name: str) -> Path:
    """Where benchmark `name` keeps what it may reuse between runs (data, a pre-trained base, its SQLite file)."""
    return ROOT / "var" / f"bench-{name}"


def embedded_env(work: Path, **extra: str) -> dict[str, str]:
    """`plateau-embedded` on SQLite and the filesystem broker, everything under `work`."""
    return {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PLATEAU_DATA_ROOT": str(work / "data"),
        "PLATEAU_DATABASE_URL": f"sqlite:///{work}/plateau.db",
        "PLATEAU_BROKER_URL": "filesystem://",
        "PLATEAU_BROKER_DIR": str(work / "broker"),
        "PLATEAU_ARTIFACTS_DIR": str(work / "artifacts"),
        **extra,
    }


def start_embedded_service(work: Path, port: int | None = None, **extra: str) -> tuple[Proc, str]:
    """The embedded service (API and its worker) with `embedded_env(work)`; returns once it is ready."""
    work.mkdir(parents=True, exist_ok=True)
    return start_embedded(embedded_env(work, **extra), work / "service.log", port=port, timeout=120)


# -- timing ------------------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds of each of `runs` calls, after one warm-up call (imports, caches)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "runs": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
    }


# -- the machine -------------------------------------------------------------------------------------------------------


def _proc_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def cpu_flags() -> set[str]:
    line = next((line for line in _proc_lines("/proc/cpuinfo") if line.startswith("flags")), "")
    return set(line.split(":", 1)[1].split()) if line else set()


def machine() -> dict:
    """The facts a figure depends on: CPU model and flags, cores, memory, Python."""
    flags = cpu_flags()
    mem_kib = next((int(line.split()[1]) for line in _proc_lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cpu": next(
            (line.split(":", 1)[1].strip() for line in _proc_lines("/proc/cpuinfo") if line.startswith("model name")),
            platform.processor(),
        ),
        "cores": os.cpu_count(),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "avx2": "avx2" in flags,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_processes(min_cpu: float = 10.0) -> list[str]:
    """Other processes using the CPU (ps' lifetime average %CPU, at least `min_cpu`), to tell contention in the
    figures: the machine is shared."""
    out = subprocess.run(["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True).stdout
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        pid, cpu, args = parts
        if int(pid) != os.getpid() and float(cpu) >= min_cpu and not args.startswith("ps "):
            busy.append(f"{cpu}% {args[:120]}")
    return busy
