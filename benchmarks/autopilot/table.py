"""Render an autopilot benchmark result (benchmarks/results/autopilot*.json) as Markdown tables.

.venv/bin/python -m benchmarks.autopilot.table benchmarks/results/autopilot-heldout-v1.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.autopilot.strategies import STRATEGIES


def cell(result: dict | None) -> str:
    if result is None:
        return "—"
    best = "—" if result["best"] is None else f"{result['best']:.3f}"
    return f"{best}, {'**reached**' if result['reached'] else 'no'}, {result['rounds']}, {result['epochs']}"


def render(data: dict) -> list[str]:
    names = list(STRATEGIES)
    lines = [
        "| family | planted cause | healthy best | "
        + " | ".join(f"{n}: best, reached, rounds, epochs" for n in names)
        + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    totals = {n: {"reached": 0, "epochs": 0, "runs": 0} for n in names}
    skipped = []
    for run in data["runs"]:
        if not run["manifested"]:
            skipped.append(f"{run['family']}/{run['case']}/s{run['seed']}")
            continue
        results = [run["strategies"].get(n) for n in names]
        lines.append(
            f"| {run['family']} | `{run['cause']}` | {run['goal']:.3f} | " + " | ".join(map(cell, results)) + " |"
        )
        for n, r in zip(names, results):
            if r is not None:
                totals[n]["reached"] += r["reached"]
                totals[n]["epochs"] += r["epochs"]
                totals[n]["runs"] += 1
    lines.append(
        "| **all** | | | "
        + " | ".join(f"**{t['reached']} of {t['runs']}**, {t['epochs']} epochs" for t in totals.values())
        + " |"
    )
    lines += ["", f"Not manifested (not counted): {', '.join(skipped) or 'none'}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "benchmarks/results/autopilot.json"
    print("\n".join(render(json.loads(path.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
