"""`pip install plateau` alone is the client: in an empty virtualenv the CLI runs and submits to a real service, and
none of the server's or the worker's heavy dependencies come along."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from models.db import session_scope
from models.tables import Job
from tests.procs import start_api
from tests.specs import small_spec

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "client-install"
SERVER_ONLY = ("tensorflow", "keras", "celery", "sqlalchemy", "sqlmodel", "psycopg", "fastapi", "alembic")


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh virtualenv with the base distribution installed from a copy of this checkout (pip's cache keeps it
    quick)."""
    tmp = tmp_path_factory.mktemp("client-install")
    source = tmp / "src"
    source.mkdir()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    proc, url = start_api({}, tmp_path_factory.mktemp("client-install-api") / "api.log")
    yield url
    proc.stop()
    with session_scope() as s:  # leave no active jobs behind for the per-tenant limit
        s.execute(
            update(Job)
            .where(Job.name.like(f"{PREFIX}%"), Job.status.in_(["queued", "running"]))
            .values(status="cancelled")
        )
        s.commit()


def run(venv: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    # No PYTHONPATH and a foreign working directory: only what the venv installed can be imported.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=venv, **kw)


@pytest.mark.parametrize("module", SERVER_ONLY)
def test_the_client_install_has_no_server_dependencies(client_venv, module):
    r = run(client_venv, str(client_venv / "bin" / "python"), "-c", f"import {module}")
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (module, r.stdout, r.stderr)


def test_the_client_imports_only_the_contract(client_venv):
    probe = (
        "import sys, client.cli, client.sdk; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'api', 'worker', 'models', 'analysis'}))"
    )
    r = run(client_venv, str(client_venv / "bin" / "python"), "-c", probe)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_installed_cli_helps_and_submits(client_venv, api, tmp_path):
    plateau = str(client_venv / "bin" / "plateau")
    helped = run(client_venv, plateau, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "submit" in helped.stdout

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(small_spec(name=f"{PREFIX}-{uuid.uuid4().hex[:8]}")))
    submitted = run(client_venv, plateau, "--url", api, "submit", str(spec_file), "--json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = json.loads(submitted.stdout)
    stored = httpx.get(f"{api}/jobs/{job['id']}", timeout=10).json()
    assert stored["name"] == job["name"] and stored["spec"]["dataset"]["image_size"] == 75

    # The contract validates on the client before any request: a bad field is named, exit 2.
    spec_file.write_text(json.dumps(small_spec(batch_size=0)))
    refused = run(client_venv, plateau, "--url", api, "submit", str(spec_file))
    assert refused.returncode == 2 and "batch_size" in refused.stdout + refused.stderr, refused
