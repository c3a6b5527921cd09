"""Score the analysis on recorded runs: per-cause precision/recall/F1, false alarms, confusion, time to the
first correct finding, and calibration. Pure: fixtures in, numbers out (no TensorFlow, database or HTTP).

A fixture is one recorded job (benchmarks/diagnosis writes them under tests/analysis/corpus/<family>/):
`history` (epoch rows), `context` (the JobContext the analysis endpoint builds), `planted` (the cause id
planted, null for a healthy run), `accepted` (cause ids that count as finding the plant), `manifested`
(whether the plant's symptom was observed in the run, judged from its metrics, not from any diagnosis).
Only manifested runs are scored; the others are listed.

A fixture recorded with probes (`benchmarks.diagnosis.run --probes`) also holds the probes' results (`probes`),
run after the job ended, beside the context recorded before they ran. Such a run is scored in two views: curves
only (the context as recorded) and with probes (`with_probes`: the results in `JobContext.probes`, as the
analysis endpoint reads them once the probes have run). The curves view is the one every figure below is
about; the probes view has its own false alarms, per-cause scores and calibration under `with_probes`. Its
first correct finding is not computed: the probes ran after the last epoch, so an earlier prefix with their
results would be anachronistic.

    .venv/bin/python -m analysis.evaluate                     # score tests/analysis/corpus
    .venv/bin/python -m analysis.evaluate --record-baseline   # and store the figures the regression test holds
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from pathlib import Path

from analysis.diagnose import diagnose
from analysis.findings import Diagnosis
from analysis.records import JobContext
from contract.epoch import EpochRecord

EPS = 1e-9
SYMPTOMS = frozenset({"plateau", "not_learning"})  # symptoms, not causes: never a false alarm, never scored
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "analysis" / "corpus"
BASELINE = CORPUS / "baseline.json"


def load_corpus(root: Path = CORPUS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))]


def with_probes(fx: dict) -> dict:
    """The fixture as the analysis endpoint would see it once the probes had run: their results in the context."""
    out = copy.deepcopy(fx)
    out["context"]["probes"] = fx.get("probes") or {}
    out["view"] = "probes"
    return out


def probed(fixtures: list[dict]) -> list[dict]:
    """The probes view of every fixture that holds probe results."""
    return [with_probes(fx) for fx in fixtures if fx.get("probes")]


def diagnose_fixture(fx: dict, upto: int | None = None) -> Diagnosis:
    """The diagnosis of the first `upto` epochs (all when None), as the endpoint would have given it then."""
    rows = fx["history"] if upto is None else fx["history"][:upto]
    history = [EpochRecord.model_validate(r) for r in rows]
    ctx = dict(fx["context"])
    if upto is not None and upto < len(fx["history"]):
        last = rows[-1]["epoch"] if rows else 0
        ctx.update(status="running", lr_reductions=[e for e in ctx.get("lr_reductions", []) if e <= last])
    return diagnose(history, JobContext.model_validate(ctx))


def found(fx: dict, diagnosis: Diagnosis) -> set[str]:
    """Reported causes, symptoms left out, with any accepted alternative counted as the planted cause."""
    accepted = set(fx.get("accepted") or [])
    return {fx["planted"] if c in accepted else c for c in (f.cause for f in diagnosis.findings) if c not in SYMPTOMS}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion k/n."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _f1(p: float | None, r: float | None) -> float | None:
    if r is None:
        return None
    p = p or 0.0  # a planted cause never reported has precision 0 for F1
    return round(2 * p * r / (p + r), 4) if p + r else 0.0


def first_correct(fx: dict) -> int | None:
    """Finished epochs at the first prefix whose diagnosis names the planted cause."""
    for k in range(1, len(fx["history"]) + 1):
        if fx["planted"] in found(fx, diagnose_fixture(fx, k)):
            return k
    return None


def reliability(pairs: list[tuple[float, bool]], bins: int = 5) -> dict:
    """Findings binned by confidence against the fraction that was right; expected calibration error."""
    table = []
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if not inside:
            table.append({"bin": [lo, hi], "findings": 0, "mean_confidence": None, "fraction_correct": None})
            continue
        conf = sum(c for c, _ in inside) / len(inside)
        acc = sum(ok for _, ok in inside) / len(inside)
        ece += len(inside) / len(pairs) * abs(acc - conf)
        table.append(
            {
                "bin": [round(lo, 2), round(hi, 2)],
                "findings": len(inside),
                "mean_confidence": round(conf, 4),
                "fraction_correct": round(acc, 4),
            }
        )
    return {"bins": table, "findings": len(pairs), "ece": round(ece, 4) if pairs else None}


def primary_cause_f1(runs: list[dict]) -> dict:
    """Per planted cause F1 of the primary cause alone (run summaries, manifested only), and their macro mean.

    An accepted alternative counts as the planted cause; a symptom or no cause as the primary is "none"; a
    healthy run whose primary cause is some cause counts against that cause's precision.
    """
    counted = [r for r in runs if r["manifested"] is True]

    def primary(r: dict) -> str:
        p = r["primary_cause"]
        if not p or p in SYMPTOMS:
            return "none"
        return r["planted"] if p in (r.get("accepted") or []) else p

    per_cause = {}
    for cause in sorted({r["planted"] for r in counted if r["planted"]}):
        flagged = [r for r in counted if primary(r) == cause]
        truth = [r for r in counted if r["planted"] == cause]
        hits = [r for r in flagged if r["planted"] == cause]
        p, rec = _ratio(len(hits), len(flagged)), _ratio(len(hits), len(truth))
        per_cause[cause] = {"planted": len(truth), "primary": len(flagged), "right": len(hits), "f1": _f1(p, rec)}
    f1s = [v["f1"] for v in per_cause.values()]
    return {"per_cause": per_cause, "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else None}


def label_issue_scores(ranked: list[str], moved: set[str]) -> dict:
    """Per-image precision and recall of a label check's ranked suspects against the files known to be moved.

    `ranked`: suspect files, most suspect first (the label_check result's `issues`); `moved`: the planted ones.
    Also the precision of the shortest prefix of the ranking that reaches recall 0.5 (None when none does).
    """
    hits = [f in moved for f in ranked]
    tp = sum(hits)
    at_half = None
    if moved:
        found_so_far = 0
        for k, hit in enumerate(hits, 1):
            found_so_far += hit
            if found_so_far / len(moved) >= 0.5:
                at_half = round(found_so_far / k, 4)
                break
    return {
        "suspects": len(ranked),
        "moved": len(moved),
        "true_positives": tp,
        "precision": _ratio(tp, len(ranked)),
        "recall": _ratio(tp, len(moved)),
        "precision_at_half_recall": at_half,
    }


def run_summary(fx: dict, first: bool = True) -> dict:
    d = diagnose_fixture(fx)
    last = fx["history"][-1] if fx["history"] else {}
    planted_first = first_correct(fx) if first and fx["planted"] and fx.get("manifested") else None
    return {
        "family": fx["family"],
        "case": fx["case"],
        "seed": fx["seed"],
        "view": fx.get("view", "curves"),
        "planted": fx["planted"],
        "accepted": fx.get("accepted") or [],
        "manifested": fx.get("manifested"),
        "manifest": fx.get("manifest"),
        "verdict": d.verdict,
        "primary_cause": d.primary_cause,
        "causes": sorted({f.cause for f in d.findings}),
        "found": sorted(found(fx, d)),
        "findings": [(f.cause, f.confidence, f.rule) for f in d.findings],
        "first_correct_epoch": planted_first,
        "planned_epochs": fx["context"].get("planned_epochs"),
        "train_eval_accuracy": last.get("train_eval_accuracy"),
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
    }


def score_family(runs: list[dict]) -> dict:
    """Scores of one family's run summaries (run_summary); only manifested runs count."""
    counted = [r for r in runs if r["manifested"] is True]
    planted = sorted({r["planted"] for r in counted if r["planted"]})
    reported = sorted({c for r in counted for c in r["found"]})
    per_cause = {}
    for cause in sorted(set(planted) | set(reported)):
        flagged = [r for r in counted if cause in r["found"]]
        hits = [r for r in flagged if r["planted"] == cause]
        truth = [r for r in counted if r["planted"] == cause]
        p, rec = _ratio(len(hits), len(flagged)), _ratio(len(hits), len(truth))
        per_cause[cause] = {
            "planted": len(truth),
            "flagged": len(flagged),
            "true_positive": len(hits),
            "precision": p,
            "recall": rec,
            "f1": _f1(p, rec),
        }
    f1s = [per_cause[c]["f1"] for c in planted]
    healthy = [r for r in counted if not r["planted"]]
    alarms = [r for r in healthy if r["found"]]
    confusion: dict[str, dict[str, int]] = {}
    for r in counted:
        row = confusion.setdefault(r["case"], {})
        key = r["primary_cause"] or "none"
        row[key] = row.get(key, 0) + 1
    plants = [r for r in counted if r["planted"]]
    firsts = [r["first_correct_epoch"] for r in plants if r["first_correct_epoch"] is not None]
    fractions = [
        r["first_correct_epoch"] / r["planned_epochs"]
        for r in plants
        if r["first_correct_epoch"] is not None and r["planned_epochs"]
    ]
    by_half = [
        r
        for r in plants
        if r["first_correct_epoch"] is not None
        and r["planned_epochs"]
        and r["first_correct_epoch"] <= 0.5 * r["planned_epochs"]
    ]
    # a finding is right when it names the planted cause or an accepted alternative
    pairs = [
        (f[1], f[0] == r["planted"] or f[0] in r["accepted"])
        for r in counted
        for f in r["findings"]
        if f[0] not in SYMPTOMS
    ]
    by_rule: dict[str, list[tuple[float, bool]]] = {}
    for r in counted:
        for f in r["findings"]:
            if f[0] not in SYMPTOMS and len(f) > 2:
                by_rule.setdefault(f[2], []).append((f[1], f[0] == r["planted"] or f[0] in r["accepted"]))
    firsts_by_cause: dict[str, list[float]] = {}
    for r in plants:
        if r["planned_epochs"]:
            frac = r["first_correct_epoch"] / r["planned_epochs"] if r["first_correct_epoch"] is not None else 1.0
            firsts_by_cause.setdefault(r["planted"], []).append(frac)
    return {
        "runs": len(runs),
        "counted": len(counted),
        "max_symptom_confidence": max((f[1] for r in counted for f in r["findings"] if f[0] in SYMPTOMS), default=None),
        "stalls_judged": _ratio(sum(r.get("verdict") in ("stagnating", "diverging") for r in plants), len(plants)),
        "rule_calibration": {
            rule: {
                "findings": len(v),
                "mean_confidence": round(sum(c for c, _ in v) / len(v), 4),
                "fraction_correct": round(sum(ok for _, ok in v) / len(v), 4),
            }
            for rule, v in sorted(by_rule.items())
        },
        "first_correct_fraction_by_cause": {
            c: round(statistics.mean(v), 4) for c, v in sorted(firsts_by_cause.items())
        },
        "not_manifested": [f"{r['case']}-s{r['seed']}" for r in runs if r["manifested"] is not True],
        "per_cause": per_cause,
        "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else None,
        "healthy_runs": len(healthy),
        "false_alarms": len(alarms),
        "false_alarm_rate": _ratio(len(alarms), len(healthy)),
        "false_alarm_ci95": wilson(len(alarms), len(healthy)),
        "confusion": confusion,
        "first_correct": {
            "plants": len(plants),
            "found": len(firsts),
            "median_epoch": statistics.median(firsts) if firsts else None,
            "median_fraction": round(statistics.median(fractions), 4) if fractions else None,
            "by_half_of_planned": _ratio(len(by_half), len(plants)),
            "by_30_percent_of_planned": _ratio(
                sum(
                    1
                    for r in plants
                    if r["first_correct_epoch"] is not None
                    and r["planned_epochs"]
                    and r["first_correct_epoch"] <= 0.3 * r["planned_epochs"]
                ),
                len(plants),
            ),
        },
        "calibration": reliability(pairs),
    }


UNTIMED = ("first_correct", "first_correct_fraction_by_cause")  # not computed in the probes view


def _parts(runs: list[dict], held: dict[str, bool], timed: bool = True) -> dict:
    def scored(part: list[dict]) -> dict:
        s = score_family(part)
        return s if timed else {k: v for k, v in s.items() if k not in UNTIMED}

    families = sorted({r["family"] for r in runs})
    return {
        "families": {f: {"held_out": held[f], **scored([r for r in runs if r["family"] == f])} for f in families},
        "development": scored([r for r in runs if not held[r["family"]]]),
        "held_out": scored([r for r in runs if held[r["family"]]]),
        "all": scored(runs),
    }


def score(fixtures: list[dict]) -> dict:
    """Curves-only scores of every fixture, and under `with_probes` the probes view of those that hold results."""
    runs = [run_summary(fx) for fx in fixtures]
    # probes ran after the job ended: no first-correct epoch in this view (it would be anachronistic)
    probe_runs = [run_summary(fx, first=False) for fx in probed(fixtures)]
    held = {fx["family"]: bool(fx.get("held_out")) for fx in fixtures}
    return {
        **_parts(runs, held),
        "with_probes": _parts(probe_runs, held, timed=False),
        "runs": runs,
        "probe_runs": probe_runs,
    }


# The corpus gate: what the analysis must keep on the recorded and synthetic runs.
MAX_FALSE_ALARM_RATE = 0.02  # on healthy runs, all families together
MAX_ECE = 0.05  # expected calibration error on the development corpus, curves only
MAX_ECE_WITH_PROBES = 0.05  # the same, on the development runs recorded with probes, scored with their results
MAX_FALSE_ALARM_RATE_WITH_PROBES = MAX_FALSE_ALARM_RATE  # healthy runs recorded with probes, scored with them
MAX_RULE_MISCALIBRATION = 0.15  # |mean confidence − fraction right| of one rule's findings (≥ MIN_RULE_FINDINGS)
MIN_RULE_FINDINGS = 3
MAX_SYMPTOM_CONFIDENCE = 0.5  # plateau / not_learning describe a stall; they never pass for its cause
FIRST_CORRECT_SLACK = 0.05  # a cause's mean first-correct fraction may grow by this much over the baseline


def gate_numbers(result: dict) -> dict:
    """The figures the gate holds, for the baseline file: per-cause F1 and first-correct fraction (all runs)."""
    a = result["all"]
    return {
        "per_cause_f1": {c: v["f1"] for c, v in a["per_cause"].items() if v["f1"] is not None},
        "per_cause_f1_with_probes": {
            c: v["f1"] for c, v in result["with_probes"]["all"]["per_cause"].items() if v["f1"] is not None
        },
        "first_correct_fraction_by_cause": a["first_correct_fraction_by_cause"],
        "stalls_judged": a["stalls_judged"],
    }


def gate(result: dict, baseline: dict) -> list[str]:
    """Why the corpus check fails; empty when it passes. `baseline` is gate_numbers of the recorded baseline."""
    a, dev = result["all"], result["development"]
    failures = []
    for cause, was in baseline["per_cause_f1"].items():
        got = a["per_cause"].get(cause, {}).get("f1") or 0.0
        if got < was - EPS:
            failures.append(f"{cause}: F1 {got} < baseline {was}")
    for cause, was in baseline.get("per_cause_f1_with_probes", {}).items():
        got = result["with_probes"]["all"]["per_cause"].get(cause, {}).get("f1") or 0.0
        if got < was - EPS:
            failures.append(f"{cause}: F1 with probes {got} < baseline {was}")
    if a["false_alarm_rate"] is not None and a["false_alarm_rate"] > MAX_FALSE_ALARM_RATE + EPS:
        failures.append(f"false alarms on healthy runs {a['false_alarm_rate']} > {MAX_FALSE_ALARM_RATE}")
    ece = dev["calibration"]["ece"]
    if ece is not None and ece > MAX_ECE + EPS:
        failures.append(f"development ECE {ece} > {MAX_ECE}")
    probes = result.get("with_probes")
    if probes:
        pa, pdev = probes["all"], probes["development"]
        ece = pdev["calibration"]["ece"]
        if ece is not None and ece > MAX_ECE_WITH_PROBES + EPS:
            failures.append(f"development ECE with probes {ece} > {MAX_ECE_WITH_PROBES}")
        rate = pa["false_alarm_rate"]
        if rate is not None and rate > MAX_FALSE_ALARM_RATE_WITH_PROBES + EPS:
            failures.append(f"false alarms with probes on healthy runs {rate} > {MAX_FALSE_ALARM_RATE_WITH_PROBES}")
    for view, part in (("", dev), (" with probes", probes["development"] if probes else None)):
        for rule, c in (part or {}).get("rule_calibration", {}).items():
            off = abs(c["mean_confidence"] - c["fraction_correct"])
            if c["findings"] >= MIN_RULE_FINDINGS and off > MAX_RULE_MISCALIBRATION + EPS:
                failures.append(
                    f"{rule}{view}: mean confidence {c['mean_confidence']} vs {c['fraction_correct']} right"
                )
    for cause, was in baseline["first_correct_fraction_by_cause"].items():
        got = a["first_correct_fraction_by_cause"].get(cause, 1.0)
        if got > was + FIRST_CORRECT_SLACK + EPS:
            failures.append(f"{cause}: first correct finding at {got:.2f} of planned epochs > {was:.2f}")
    top = a["max_symptom_confidence"]
    if top is not None and top > MAX_SYMPTOM_CONFIDENCE + EPS:
        failures.append(f"a symptom reported at {top} > {MAX_SYMPTOM_CONFIDENCE}: it would pass for a cause")
    if a["stalls_judged"] is not None and a["stalls_judged"] < baseline["stalls_judged"] - EPS:
        failures.append(f"planted runs judged stalled {a['stalls_judged']} < {baseline['stalls_judged']}")
    return failures


def headline(result: dict) -> dict:
    """The figures the regression test holds: macro-F1 and false-alarm rate per family."""
    return {
        f: {"macro_f1": s["macro_f1"], "false_alarm_rate": s["false_alarm_rate"], "counted": s["counted"]}
        for f, s in result["families"].items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "diagnosis.json")
    parser.add_argument("--record-baseline", action="store_true", help=f"write the headline figures to {BASELINE.name}")
    args = parser.parse_args(argv)
    result = score(load_corpus(args.corpus))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(headline(result), indent=2))
    for name in ("development", "held_out"):
        part = result[name]
        print(
            f"{name}: macro-F1 {part['macro_f1']}, false alarms {part['false_alarm_rate']}, "
            f"ECE {part['calibration']['ece']}, first correct (median fraction) {part['first_correct']['median_fraction']}"
        )
        part = result["with_probes"][name]
        if part["runs"]:
            print(
                f"{name} with probes ({part['runs']} runs recorded with probes): macro-F1 {part['macro_f1']}, "
                f"false alarms {part['false_alarms']}/{part['healthy_runs']}, "
                f"ECE {part['calibration']['ece']} ({part['calibration']['findings']} findings)"
            )
    if args.record_baseline:
        baseline = {"families": headline(result), "gate": gate_numbers(result)}
        (args.corpus / BASELINE.name).write_text(json.dumps(baseline, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
