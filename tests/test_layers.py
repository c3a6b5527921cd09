"""The import rules between packages, checked by import-linter with the contracts in pyproject.toml:
api and worker never import each other, the domain (models/) calls neither, contract/ and analysis/ are pure,
and the client needs nothing of the server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_project_keeps_its_import_contracts():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_worker_import_in_the_api_breaks_the_contract(tmp_path):
    """The same contracts over a copy where one API module imports the worker: the tool must refuse it."""
    for package in ("api", "worker", "models", "contract", "analysis", "client"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "worker" / "runner.py").write_text("X = 1\n")
    (tmp_path / "api" / "routes.py").write_text("def f():\n    from worker.runner import X\n    return X\n")
    config = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(config[config.index("[tool.importlinter]") :])
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "api and worker never import each other BROKEN" in done.stdout
