"""Render the scored corpus (benchmarks/results/diagnosis.json, from analysis/evaluate.py) as Markdown tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.common import ROOT


def fmt(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def family_title(name: str, s: dict) -> str:
    return (
        f"{name} (held out: never looked at while choosing rules, thresholds or recipes)"
        if s["held_out"]
        else f"{name} (development)"
    )


def render_family(name: str, s: dict) -> list[str]:
    lines = [
        f"### {family_title(name, s)}",
        "",
        f"{s['counted']} of {s['runs']} runs scored; not manifested (not scored): "
        f"{', '.join(s['not_manifested']) or 'none'}.",
        "",
        "| cause | planted | flagged | precision | recall | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for cause, row in s["per_cause"].items():
        lines.append(
            f"| `{cause}` | {row['planted']} | {row['flagged']} | {fmt(row['precision'])} "
            f"({row['true_positive']}/{row['flagged']}) | {fmt(row['recall'])} | {fmt(row['f1'])} |"
        )
    ci = s["false_alarm_ci95"]
    fc = s["first_correct"]
    lines += [
        "",
        f"- macro-F1 over planted causes: **{fmt(s['macro_f1'])}**",
        f"- false alarms on healthy runs: **{s['false_alarms']}/{s['healthy_runs']}** "
        f"({fmt(s['false_alarm_rate'])}; 95 % Wilson interval {fmt(ci[0]) if ci else '—'}–{fmt(ci[1]) if ci else '—'})",
        f"- first correct finding: {fc['found']}/{fc['plants']} plants found; median epoch {fc['median_epoch']}, "
        f"median {fmt(fc['median_fraction'])} of the planned epochs; found by half of the planned epochs: "
        f"{fmt(fc['by_half_of_planned'])}",
        f"- calibration: expected calibration error **{fmt(s['calibration']['ece'])}** over "
        f"{s['calibration']['findings']} findings",
        "",
    ]
    primaries = sorted({p for row in s["confusion"].values() for p in row})
    lines += [
        "| planted case \\ primary cause | " + " | ".join(f"`{p}`" for p in primaries) + " |",
        "|---|" + "---|" * len(primaries),
    ]
    for case, row in s["confusion"].items():
        lines.append(f"| {case} | " + " | ".join(str(row.get(p, "")) for p in primaries) + " |")
    lines += ["", "| confidence | findings | mean confidence | fraction correct |", "|---|---|---|---|"]
    for b in s["calibration"]["bins"]:
        lines.append(
            f"| {b['bin'][0]:.1f}–{b['bin'][1]:.1f} | {b['findings']} | {fmt(b['mean_confidence'])} | "
            f"{fmt(b['fraction_correct'])} |"
        )
    return lines + [""]


def render_runs(runs: list[dict]) -> list[str]:
    lines = [
        "| family | case | seed | manifested | verdict | primary cause | causes found | first correct | "
        "train-eval acc | val acc | val loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['family']} | {r['case']} | {r['seed']} | {'yes' if r['manifested'] else 'no' if r['manifested'] is False else '?'} "
            f"| {r['verdict']} | {r['primary_cause'] or '—'} | {', '.join(r['causes']) or '—'} | "
            f"{r['first_correct_epoch'] or '—'} | {fmt(r['train_eval_accuracy'])} | {fmt(r['val_accuracy'])} | "
            f"{fmt(r['val_loss'])} |"
        )
    return lines


def render(result: dict) -> str:
    lines: list[str] = []
    # the development family first, the held-out one after it
    for name, s in sorted(result["families"].items(), key=lambda kv: (kv[1]["held_out"], kv[0])):
        lines += render_family(name, s)
    return "\n".join(lines + render_runs(result["runs"]))


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "diagnosis.json"
    print(render(json.loads(path.read_text())))
