"""Test setup: a fresh PostgreSQL database and Redis database per run, and generated image sets.

The environment is set before any project module is imported, so in-process apps and the
subprocesses the tests start all read the same configuration.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

PG_ADMIN = os.environ.get("PLATEAU_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PLATEAU_TEST_REDIS", "redis://127.0.0.1:6379/11")
RUN_ID = uuid.uuid4().hex[:10]
DB_NAME = f"plateau_test_{RUN_ID}"
WORKDIR = Path(tempfile.mkdtemp(prefix="plateau-tests-"))
DATA_ROOT = WORKDIR / "data"

os.environ.update(
    {
        "PLATEAU_DATABASE_URL": PG_ADMIN.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
        + f"/{DB_NAME}",
        "PLATEAU_BROKER_URL": REDIS_URL,
        "PLATEAU_DATA_ROOT": str(DATA_ROOT),
        "PLATEAU_ARTIFACTS_DIR": str(WORKDIR / "artifacts"),
        # In-process apps enqueue to a queue no test worker consumes; worker tests pass their own.
        # Queue names carry the run id, so concurrent test runs sharing one Redis never touch each other's work.
        "PLATEAU_QUEUE": f"inprocess-{RUN_ID}",
        "PLATEAU_TEST_WORKER_QUEUE": f"gpu-{RUN_ID}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
)

# Logs as the API and worker processes write them (JSON on stderr): code run in-process here, such as a
# simulated worker thread, must not print into the stdout a CLI test parses.
from models.logs import configure_logging  # noqa: E402

configure_logging()


_EXTRA_DATABASES: list[str] = []


def new_database_url() -> str:
    """A fresh, empty database on the shared server, for tests whose workers must not see other tests' jobs
    (a worker's reconciler re-sends every stale queued job it finds)."""
    name = f"plateau_test_{RUN_ID}_{len(_EXTRA_DATABASES) + 1}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _EXTRA_DATABASES.append(name)
    return os.environ["PLATEAU_DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"


def pytest_configure(config: pytest.Config) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    from samples.shapes import generate

    generate(DATA_ROOT / "shapes", classes=3, train=8, val=4, size=80, seed=1)


def pytest_unconfigure(config: pytest.Config) -> None:
    try:
        client = redis.Redis.from_url(REDIS_URL)
        for queue in (os.environ["PLATEAU_QUEUE"], os.environ["PLATEAU_TEST_WORKER_QUEUE"]):
            client.delete(queue)
        from models.db import get_engine

        get_engine().dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in [DB_NAME, *_EXTRA_DATABASES]:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)


# The inner loop, `pytest -m fast` (README, "Quick start"): the pure analysis, the contract, and the API and the
# domain in-process against the test databases. No training, no worker or service process, no schema fuzzing.
FAST = (
    "tests/analysis/",
    "tests/test_analysis_api.py",
    "tests/test_analysis_cache.py",
    "tests/test_api.py",
    "tests/test_architecture.py",
    "tests/test_artifacts.py",
    "tests/test_autopilot_bench_table.py",
    "tests/test_autopilot_logic.py",
    "tests/test_compose.py",
    "tests/test_epoch_contract.py",
    "tests/test_epoch_diagnosis.py",
    "tests/test_events.py",
    "tests/test_history_cache.py",
    "tests/test_hostile_input.py",
    "tests/test_job_contract.py",
    "tests/test_layers.py",
    "tests/test_lifecycle.py",
    "tests/test_metrics_etag.py",
    "tests/test_spec_validation.py",
    "tests/test_tenancy_limits.py",
    "tests/test_webhooks.py",
)
_ROOT = Path(__file__).resolve().parent.parent


# The modules that train, and start, kill and restart processes, longest first (measured by `--durations`): under
# `-n`, a long test started last would run alone at the end while the other worker idles.
LONG_FIRST = (
    "tests/test_faults_embedded.py",
    "tests/test_faults.py",
    "tests/test_flow_postgres.py",
    "tests/test_embedded_recovery.py",
    "tests/test_paused_worker.py",
    "tests/test_soak.py",
    "tests/test_autopilot_flow.py",
    "tests/test_batchnorm.py",
    "tests/test_artifacts_disk.py",
    "tests/test_probes_flow.py",
    "tests/test_warm_start.py",
    "tests/test_model_options.py",
    "tests/test_training_checks.py",
    "tests/test_autopilot_bench_probe_only.py",
    "tests/test_worker_paths.py",
    "tests/test_schemathesis.py",
    "tests/test_dashboard.py",
    "tests/test_client_install.py",
    "tests/test_flow_embedded.py",
)


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.path.relative_to(_ROOT).as_posix().startswith(FAST):
        item.add_marker(pytest.mark.fast)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.relative_to(_ROOT).as_posix()
        return LONG_FIRST.index(module) if module in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: each module's tests stay together, in their order


@pytest.fixture(scope="session")
def data_root() -> Path:
    return DATA_ROOT


@pytest.fixture(scope="session")
def client():
    from fastapi.testclient import TestClient

    from api.main import app

    with TestClient(app) as c:
        yield c
