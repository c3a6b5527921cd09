"""The import rule between packages: the API never imports the worker (it enqueues through `models.broker` and
sends webhooks through the lifecycle), so it runs without TensorFlow or the worker's code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, including `__import__("…")` and
    `importlib.import_module("…")` with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def test_the_finder_sees_every_kind_of_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text(
        "import worker.tasks\nfrom worker import runner\ndef f():\n    from worker.x import y\n"
        "    __import__('worker.z')\n    importlib.import_module('worker.w')\n"
    )
    assert imported_modules(sample) == {"worker.tasks", "worker", "worker.x", "worker.z", "worker.w"}


def test_no_api_module_imports_the_worker():
    files = sorted((ROOT / "api").rglob("*.py"))
    assert len(files) > 20
    offenders = {
        str(f.relative_to(ROOT)): sorted(m for m in imported_modules(f) if m.split(".")[0] == "worker") for f in files
    }
    assert {f: m for f, m in offenders.items() if m} == {}
