"""End to end on the embedded default: one command, a SQLite file and kombu's filesystem broker."""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.flows import run_small_job_to_success
from tests.procs import Proc, free_port, wait_for
from tests.specs import small_spec

pytestmark = pytest.mark.slow


def test_embedded_service_trains_a_job(tmp_path):
    home = tmp_path / "home"
    env = {
        "PLATEAU_DATABASE_URL": f"sqlite:///{home}/plateau.db",
        "PLATEAU_BROKER_URL": "filesystem://",
        "PLATEAU_BROKER_DIR": str(home / "broker"),
        "PLATEAU_ARTIFACTS_DIR": str(home / "artifacts"),
        "PLATEAU_QUEUE": "gpu",
    }
    port = free_port()
    proc = Proc([sys.executable, "-m", "api.embedded", "--port", str(port)], env, tmp_path / "embedded.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            def ready():
                try:
                    return api.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, 90, proc.tail)
            done = run_small_job_to_success(api, small_spec(epochs=2), proc.tail)
            assert (home / "plateau.db").exists()
            assert done["model_path"].startswith(str(home / "artifacts"))
    finally:
        proc.stop(timeout=60)
    assert "ready." in proc.tail(1_000_000)  # the worker ran inside the embedded launcher
