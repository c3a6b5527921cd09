"""Render an autopilot benchmark result (benchmarks/results/autopilot*.json) as Markdown: the targets with their
measured values, each strategy's share reached and epochs, what the autopilot did per cause, and every run.

.venv/bin/python -m benchmarks.autopilot.table benchmarks/results/autopilot-heldout-v1.json [--held-out glyphs]

Held-out families (the result's `held_out`, or --held-out) are reported apart from the development ones. Only
plants that manifested count. Intervals: the share reached is pooled over families, cases and seeds with a
95 % Wilson interval, and its spread is the min–max of the per-seed shares; the epoch comparison pairs the
autopilot with the random remedy on the same plants (median difference, 95 % percentile bootstrap of that
median, and an exact two-sided sign test).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections import Counter
from pathlib import Path

from benchmarks.autopilot.strategies import STRATEGIES

REACH_TARGET = 0.9
Z95 = 1.959964
BOOTSTRAP = 2000


# -- statistics ------------------------------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of k successes in n (None when n is 0)."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test(diffs: list[float]) -> float | None:
    """Exact two-sided sign test of a zero median difference (ties dropped); None when every pair ties."""
    below, above = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
    n = below + above
    if n == 0:
        return None
    tail = sum(math.comb(n, i) for i in range(min(below, above) + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_median(diffs: list[float], resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of the median difference (a fixed seed: the table is reproducible)."""
    if not diffs:
        return None
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[min(resamples - 1, int(0.975 * resamples))]


# -- figures ---------------------------------------------------------------------------------------------------------


def groups(data: dict, held_out: list[str] | None = None) -> list[tuple[str, list[dict]]]:
    """The manifested runs of the development families and of the held-out ones, each non-empty group once."""
    held = set(held_out if held_out is not None else data.get("held_out") or [])
    runs = [r for r in data["runs"] if r["manifested"]]
    out = [
        ("development", [r for r in runs if r["family"] not in held]),
        ("held out", [r for r in runs if r["family"] in held]),
    ]
    return [(name, mine) for name, mine in out if mine]


def reach(runs: list[dict], name: str) -> dict:
    """Share of the strategy's runs that reached the goal, pooled with its Wilson interval, and per seed."""
    results = [(r["seed"], r["strategies"][name]) for r in runs if name in r["strategies"]]
    k, n = sum(x["reached"] for _, x in results), len(results)
    per_seed: dict[int, list[bool]] = {}
    for seed, x in results:
        per_seed.setdefault(seed, []).append(bool(x["reached"]))
    shares = {seed: sum(v) / len(v) for seed, v in sorted(per_seed.items())}
    return {
        "k": k,
        "n": n,
        "share": k / n if n else None,
        "interval": wilson(k, n),
        "per_seed": shares,
        "spread": (min(shares.values()), max(shares.values())) if shares else None,
    }


def totals(runs: list[dict], name: str) -> dict:
    results = [r["strategies"][name] for r in runs if name in r["strategies"]]
    probe = [x["probe"]["seconds"] for x in results if (x.get("probe") or {}).get("seconds") is not None]
    return {
        "runs": len(results),
        "epochs": sum(x["epochs"] for x in results),
        "epochs_saved": sum(x.get("epochs_saved_by_warm_starts", 0) for x in results),
        "mean_rounds": statistics.fmean(x["rounds"] for x in results) if results else None,
        "probe_seconds": sum(probe) if probe else None,
    }


def paired_epochs(runs: list[dict], a: str = "autopilot", b: str = "random_remedy") -> dict:
    """Epochs of `a` against `b` on the plants both ran: totals, the per-plant differences (a − b), their median
    with a bootstrap interval, how many plants each spent fewer on, and the sign test."""
    pairs = [
        (r["strategies"][a]["epochs"], r["strategies"][b]["epochs"]) for r in runs if {a, b} <= r["strategies"].keys()
    ]
    diffs = [x - y for x, y in pairs]
    return {
        "plants": len(pairs),
        "a": sum(x for x, _ in pairs),
        "b": sum(y for _, y in pairs),
        "median_difference": statistics.median(diffs) if diffs else None,
        "interval": bootstrap_median(diffs),
        "fewer": sum(d < 0 for d in diffs),
        "more": sum(d > 0 for d in diffs),
        "equal": sum(d == 0 for d in diffs),
        "sign_test_p": sign_test(diffs),
    }


def targets(runs: list[dict]) -> list[dict]:
    """The issue's two targets for the autopilot, each with its measured value and whether it is met."""
    r = reach(runs, "autopilot")
    e = paired_epochs(runs)
    return [
        {
            "target": f"reaches the healthy baseline in ≥ {REACH_TARGET * 100:.0f} % of manifested plants",
            "measured": r,
            "met": r["share"] is not None and r["share"] >= REACH_TARGET,
        },
        {
            "target": "in fewer total epochs than the oracle-stopped random remedy",
            "measured": e,
            "met": e["plants"] > 0 and e["a"] < e["b"],
        },
    ]


def flat(patch: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in patch.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def value_text(value) -> str:
    """A patched value as the lineage line shows it: a list of files by its length."""
    return f"[{len(value)} files]" if isinstance(value, list) and len(value) > 3 else repr(value)


def step_text(step: dict) -> str:
    """One autopilot round: remedy, the values it changed, the evidence that chose them, and its measured effect."""
    before = flat(step.get("parent_patch_values") or {})
    changes = [
        f"{k} {value_text(before.get(k))} → {value_text(v)}" if k in before else f"{k} {value_text(v)}"
        for k, v in flat(step.get("patch") or {}).items()
        if not k.startswith("model.init_from")
    ]
    ev = step.get("evidence") or {}
    why = []
    if ev.get("learning_rate_from") == "range_test":
        why.append(f"range test {ev.get('suggested_lr'):.3g}")
    elif ev.get("measured_lr_ignored"):
        why.append("rule (range test's rate moved the other way)")
    if ev.get("label_check"):
        check = ev["label_check"]
        noise = check.get("noise_rate")
        why.append(
            f"label check: {check.get('suspects')} suspects" + (f", noise {noise:.2f}" if noise is not None else "")
        )
    if ev.get("cold_start"):
        why.append("cold: rate too high")
    if ev.get("follow_up"):
        why.append("follow-up")
    if step.get("start") == "warm":
        saved = (ev.get("warm_start") or {}).get("epochs_saved", step.get("epochs_saved", 0))
        why.append(f"warm, {saved} epochs saved")
    gain = "" if step.get("gain") is None else f", {step['gain']:+.3f}"
    effect = f"{step.get('direction') or 'unmeasured'}{gain}"
    return (
        f"r{step['round']} `{'+'.join(step.get('remedies') or ['patch'])}` for `{step.get('cause')}`"
        + (f" ({'; '.join(changes)})" if changes else "")
        + (f" [{'; '.join(why)}]" if why else "")
        + f": {effect}"
    )


def per_cause(runs: list[dict], name: str = "autopilot") -> dict[str, dict]:
    """Per planted cause, what the strategy did: remedies per round (with their measured direction), how its
    lineages ended, which evidence chose the values, epochs warm starts saved, and one line per plant."""
    out: dict[str, dict] = {}
    for run in runs:
        x = run["strategies"].get(name)
        if x is None:
            continue
        c = out.setdefault(
            run["cause"],
            {
                "plants": 0,
                "reached": 0,
                "rounds": {},
                "ended": Counter(),
                "evidence": Counter(),
                "saved": 0,
                "lines": [],
            },
        )
        c["plants"] += 1
        c["reached"] += bool(x["reached"])
        c["saved"] += x.get("epochs_saved_by_warm_starts", 0)
        lineage = x.get("lineage")
        if lineage is None:
            continue
        c["ended"][lineage.get("end_reason") or "—"] += 1
        steps = [s for s in lineage["steps"] if s.get("round")]
        for s in steps:
            label = f"{'+'.join(s.get('remedies') or ['patch'])} ({s.get('direction') or 'unmeasured'})"
            c["rounds"].setdefault(s["round"], Counter())[label] += 1
            ev = s.get("evidence") or {}
            c["evidence"]["range test"] += ev.get("learning_rate_from") == "range_test"
            c["evidence"]["rule over range test"] += bool(ev.get("measured_lr_ignored"))
            c["evidence"]["follow-up"] += bool(ev.get("follow_up"))
            c["evidence"]["label check"] += bool(ev.get("label_check"))
            c["evidence"]["cold after a rate too high"] += bool(ev.get("cold_start"))
            c["evidence"]["warm start"] += s.get("start") == "warm"
        best_job = (lineage.get("best_job_id") or "—")[:8]
        best = "—" if lineage.get("best") is None else f"{lineage['best']:.3f}"
        c["lines"].append(
            f"{run['family']} s{run['seed']} (goal {run['goal']:.3f}): "
            + (" → ".join(step_text(s) for s in steps) or "no fork")
            + f"; ended {lineage.get('end_reason') or '—'}; best job {best_job} ({best})"
            + ("; **reached**" if x["reached"] else "")
        )
    return out


# -- rendering -------------------------------------------------------------------------------------------------------


def share_text(r: dict) -> str:
    if not r["n"]:
        return "—"
    lo, hi = r["interval"]
    spread = f"{r['spread'][0]:.2f}–{r['spread'][1]:.2f}" if r["spread"] else "—"
    return f"{r['k']} of {r['n']} = {r['share']:.2f} (95 % {lo:.2f}–{hi:.2f}; per seed {spread})"


def epochs_text(e: dict) -> str:
    if not e["plants"]:
        return "no plant ran both"
    ci = "" if e["interval"] is None else f" (95 % bootstrap {e['interval'][0]:+g} to {e['interval'][1]:+g})"
    p = "—" if e["sign_test_p"] is None else f"{e['sign_test_p']:.3g}"
    return (
        f"{e['a']} against {e['b']} on {e['plants']} plants; median difference {e['median_difference']:+g}{ci}; "
        f"fewer on {e['fewer']}, more on {e['more']}, equal on {e['equal']} (sign test p = {p})"
    )


def cell(result: dict | None) -> str:
    if result is None:
        return "—"
    best = "—" if result["best"] is None else f"{result['best']:.3f}"
    return f"{best}, {'**reached**' if result['reached'] else 'no'}, {result['rounds']}, {result['epochs']}"


def render_group(title: str, runs: list[dict], names: list[str]) -> list[str]:
    families = ", ".join(dict.fromkeys(r["family"] for r in runs))
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in runs}))
    lines = [f"### {title}: {families}; seeds {seeds}; {len(runs)} manifested plants", ""]
    lines += ["| target | measured | met |", "|---|---|---|"]
    for t in targets(runs):
        m = t["measured"]
        lines.append(
            f"| {t['target']} | {share_text(m) if 'k' in m else epochs_text(m)} | {'met' if t['met'] else '**not met**'} |"
        )
    lines += [
        "",
        "| strategy | reached (95 % Wilson; per-seed min–max) | total epochs | epochs saved by warm starts "
        "| mean rounds | range-test seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        t = totals(runs, name)
        if not t["runs"]:
            continue
        probe = "—" if t["probe_seconds"] is None else f"{t['probe_seconds']:.0f}"
        lines.append(
            f"| {name} | {share_text(reach(runs, name))} | {t['epochs']} | {t['epochs_saved']} "
            f"| {t['mean_rounds']:.2f} | {probe} |"
        )
    no_fork = [
        f"{r['family']}/{r['case']}/s{r['seed']} ({r['strategies']['probe_only']['no_fork']})"
        for r in runs
        if (r["strategies"].get("probe_only") or {}).get("no_fork")
    ]
    if no_fork:
        lines += ["", f"Probe only did not fork (no rate): {'; '.join(no_fork)}."]
    causes = per_cause(runs)
    if causes:
        rounds = sorted({n for c in causes.values() for n in c["rounds"]})
        lines += [
            "",
            "What the autopilot did, per cause (remedy per round with the measured direction of its fork):",
            "",
            "| "
            + " | ".join(["cause", "plants", "reached", *(f"round {n}" for n in rounds), "ended", "evidence"])
            + " | epochs saved |",
            "|" + "---|" * (6 + len(rounds)),
        ]
        for cause, c in sorted(causes.items()):
            per_round = [
                ", ".join(f"{k} ×{v}" for k, v in c["rounds"].get(n, Counter()).most_common()) or "—" for n in rounds
            ]
            ended = ", ".join(f"{k} ×{v}" for k, v in c["ended"].most_common()) or "—"
            evidence = ", ".join(f"{k} ×{v}" for k, v in c["evidence"].most_common() if v) or "—"
            cells = [f"`{cause}`", str(c["plants"]), str(c["reached"]), *per_round, ended, evidence, str(c["saved"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for cause, c in sorted(causes.items()):
            lines += [f"- `{cause}`: " + line for line in c["lines"]]
        unrecorded = sum(c["plants"] - len(c["lines"]) for c in causes.values())
        if unrecorded:
            lines.append(f"- {unrecorded} lineages not recorded in this file (it predates the lineage record).")
    lines += [
        "",
        "| family | planted cause | seed | healthy best | "
        + " | ".join(f"{n}: best, reached, rounds, epochs" for n in names)
        + " | autopilot's best job |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for run in runs:
        results = [run["strategies"].get(n) for n in names]
        ap = run["strategies"].get("autopilot") or {}
        lines.append(
            f"| {run['family']} | `{run['cause']}` | {run['seed']} | {run['goal']:.3f} | "
            + " | ".join(map(cell, results))
            + f" | {(ap.get('best_job_id') or '—')[:8]} |"
        )
    return lines


def render(data: dict, held_out: list[str] | None = None) -> list[str]:
    names = [n for n in STRATEGIES if any(n in r["strategies"] for r in data["runs"])]
    lines: list[str] = []
    for title, runs in groups(data, held_out):
        lines += render_group(title, runs, names) + [""]
    skipped = [f"{r['family']}/{r['case']}/s{r['seed']}" for r in data["runs"] if not r["manifested"]]
    lines.append(f"Not manifested (not counted): {', '.join(skipped) or 'none'}.")
    reruns = [h["rerun"] for h in data.get("healthy", {}).values() if h.get("rerun")]
    if reruns:
        k, n = sum(r["reached"] for r in reruns), len(reruns)
        lo, hi = wilson(k, n)
        lines.append(
            f"Control: the healthy recipe rerun with another training seed reached its own goal (within "
            f"{data.get('tolerance', 0.02):g}) in {k} of {n} (family, seed) pairs = {k / n:.2f} (95 % {lo:.2f}–{hi:.2f}): "
            "the ceiling of the reach target under this rule."
        )
    overhead = data.get("overhead")
    if overhead:
        lines.append(
            f"Besides the lineages: {overhead['healthy_epochs']} epochs of healthy runs (the goals) and "
            f"{overhead['plant_check_epochs']} of plant checks (did each plant manifest?)."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=Path(__file__).resolve().parents[2] / "benchmarks/results/autopilot.json"
    )
    parser.add_argument("--held-out", help="families to report apart (default: the result's own held_out)")
    args = parser.parse_args(argv)
    held = args.held_out.split(",") if args.held_out else None
    print("\n".join(render(json.loads(args.path.read_text()), held)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
