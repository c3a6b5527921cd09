"""End to end on the embedded default: one command, a SQLite file and kombu's filesystem broker."""

from __future__ import annotations

import httpx
import pytest

from tests.flows import run_small_job_to_success
from tests.procs import embedded_env, start_embedded
from tests.specs import small_spec

pytestmark = pytest.mark.slow


def test_embedded_service_trains_a_job(tmp_path):
    home = tmp_path / "home"
    env = embedded_env(home)
    proc, url = start_embedded(env, tmp_path / "embedded.log", timeout=90)
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            done = run_small_job_to_success(api, small_spec(epochs=2), proc.tail)
            assert (home / "plateau.db").exists()
            assert done["model_path"].startswith(str(home / "artifacts"))
    finally:
        proc.stop(timeout=60)
    assert "ready." in proc.tail(1_000_000)  # the worker ran inside the embedded launcher
