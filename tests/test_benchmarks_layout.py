"""benchmarks/: every runner imports and answers --help, and no two benchmark modules import each other
(what they share is in benchmarks/common.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = sorted(p.parent.name for p in (ROOT / "benchmarks").glob("*/run.py"))


def test_no_import_cycles_between_benchmark_modules():
    graph = grimp.build_graph("benchmarks")
    modules = sorted(m for m in graph.modules if m.startswith("benchmarks"))
    cycles = [
        (a, b)
        for i, a in enumerate(modules)
        for b in modules[i + 1 :]
        if graph.find_shortest_chain(importer=a, imported=b) and graph.find_shortest_chain(importer=b, imported=a)
    ]
    assert cycles == []


@pytest.mark.parametrize("name", RUNNERS)
def test_each_runner_answers_help(name):
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}.run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stdout + done.stderr
