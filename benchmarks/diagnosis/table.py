"""Render benchmarks/results/diagnosis.json as the Markdown tables in docs/benchmarks.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.diagnosis.run import ROOT


def fmt(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def render(result: dict) -> str:
    targets = sorted(result["by_target"])
    lines = ["| cause | " + " | ".join(f"{t}: precision | {t}: recall" for t in targets) + " |",
             "|---|" + "---|---|" * len(targets)]
    for cause in result["all"]["per_cause"]:
        cells = []
        for t in targets:
            row = result["by_target"][t]["per_cause"][cause]
            cells += [f"{fmt(row['precision'])} ({row['true_positive']}/{row['flagged']})",
                      f"{fmt(row['recall'])} ({sum(1 for r in result['runs'] if r['target'] == t and cause in r['causes'] and r['condition'] in _planted(cause))}/{row['planted']})"]
        lines.append(f"| `{cause}` | " + " | ".join(cells) + " |")
    alarms = " | ".join(f"{t}: {result['by_target'][t]['false_alarms']}/{result['by_target'][t]['healthy_runs']}"
                        for t in targets)
    lines += ["", f"False alarms on healthy runs (a cause other than the `plateau` symptom): {alarms}.", "",
              "| target | planted | verdict | primary cause | causes found | train-eval acc | val acc | val loss |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['target']} | {r['condition']} | {r['verdict']} | {r['primary_cause'] or '—'} | "
                     f"{', '.join(r['causes']) or '—'} | {fmt(r['train_eval_accuracy'])} | {fmt(r['val_accuracy'])} | "
                     f"{fmt(r['val_loss'])} |")
    return "\n".join(lines)


def _planted(cause: str) -> set[str]:
    from benchmarks.diagnosis.run import CONDITIONS

    return {name for name, (_, _, accepted) in CONDITIONS.items() if cause in accepted}


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "diagnosis.json"
    print(render(json.loads(path.read_text())))
