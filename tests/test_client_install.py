"""`pip install plateau` alone is the client: in an empty virtualenv the CLI runs and submits to a real service, and
none of the server's or the worker's heavy dependencies come along; its wheel holds no server package, which ship
in the `plateau-server` distribution (server/pyproject.toml) instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
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


def _wheel(source: Path, out: Path) -> zipfile.ZipFile:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def _top_level(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}


SERVER_PACKAGES = {"api", "worker", "models", "analysis"}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A clean copy of what the two distributions are built from (no build/ folder left by an earlier build)."""
    source = tmp_path_factory.mktemp("wheels") / "src"
    (source / "server").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "server/pyproject.toml"):
        shutil.copy(ROOT / name, source / name)
    for package in ("client", "contract", *SERVER_PACKAGES):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def test_the_base_wheel_ships_the_client_and_the_contract_only(checkout, tmp_path):
    wheel = _wheel(checkout, tmp_path / "base")
    assert _top_level(wheel) == {"client", "contract"}
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "plateau-embedded" not in wheel.read(entry_points).decode()


def test_the_server_wheel_ships_the_server_packages_with_their_data(checkout, tmp_path):
    wheel = _wheel(checkout / "server", tmp_path / "server")
    assert _top_level(wheel) == SERVER_PACKAGES
    names = set(wheel.namelist())
    assert "models/migrations/script.py.mako" in names
    assert any(n.startswith("models/migrations/versions/") and n.endswith(".py") for n in names)
    assert any(n.startswith("api/dashboard/templates/") for n in names)
    assert "analysis/calibration/params.json" in names  # the fitted confidence calibration the rules read
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "plateau-embedded = api.embedded:main" in wheel.read(entry_points).decode()
