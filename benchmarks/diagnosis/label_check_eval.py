"""The linear probe and label check, run offline on recorded jobs' stored features, scored against planted noise.

    .venv/bin/python -m benchmarks.diagnosis.label_check_eval [--fixtures DIR] [--artifacts DIR] [--out FILE]

For each fixture (`run.py --probes`: a job's id, case and seed, for label-noise runs the files the plant moved) whose
job kept its training features (`<artifacts>/<job id>/train_features.npz`; unfrozen jobs do not), runs what the
worker runs on them (`worker/probes/run.py`): the out-of-fold probabilities once, then `linear_probe` and
`label_check` on them. Prints per run the probe's accuracy against the training labels, the label check's noise
rate and suspects, and for label-noise runs their per-image precision and recall against the moved files
(`heldout.label_issues`' scoring); on every other run the labels are as drawn, so each suspect is a false positive.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from analysis import evaluate
from benchmarks.common import ROOT
from models.checkpoints import TRAIN_FEATURES
from worker.probes import linear
from worker.training import stored_features

FIXTURES = ROOT / "tests" / "analysis" / "heldout" / "quality"
ARTIFACTS = ROOT / "var" / "bench-diagnosis" / "artifacts"


def files_under_train_dir(paths: list[str], train_dir: str) -> list[str]:
    """Each image's path under the job's train_dir, as the worker's label check names it (`CLASS/FILE`)."""
    marker = "/" + train_dir.strip("/") + "/"
    return [p.split(marker, 1)[1] for p in paths]


def diagnosed_causes(fx: dict, results: dict) -> set[str]:
    """The causes the analysis names once the probes had run, with these results in place of the recorded ones."""
    probes = {name: {**(fx.get("probes") or {}).get(name, {}), **r} for name, r in results.items()}
    d = evaluate.diagnose_fixture(evaluate.with_probes({**fx, "probes": {**(fx.get("probes") or {}), **probes}}))
    return {f.cause for f in d.findings}


def evaluate_run(fx: dict, features_path: Path, repeats: int = 1) -> dict:
    features, paths, labels, classes = stored_features.read(features_path)
    spec = fx["job"]["spec"]
    files = files_under_train_dir(paths, spec["dataset"]["train_dir"])
    seed = spec.get("seed") if spec.get("seed") is not None else spec["dataset"].get("seed") or 0
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fitted = linear.out_of_fold(features, labels, len(classes), seed=seed)
        seconds.append(time.perf_counter() - start)
    probe = linear.linear_probe(features, labels, classes, seed=seed, fitted=fitted)
    check = linear.label_check(features, labels, classes, files, seed=seed, fitted=fitted)
    ranked = [i["file"] for i in check["issues"]]
    recorded = (fx.get("probes") or {}).get("linear_probe") or {}
    causes = diagnosed_causes(fx, {"linear_probe": probe, "label_check": check})
    out = {
        "run": f"{fx['case']}-s{fx['seed']}",
        "case": fx["case"],
        "images": len(labels),
        "accuracy": probe["accuracy"],
        "interval": probe["interval"],
        "chance": probe["chance"],
        "informative": probe["informative"],
        "recorded_accuracy": recorded.get("accuracy"),
        "noise_rate": check["noise_rate"],
        "suspects": len(ranked),
        "p_value": check.get("p_value"),
        "C": probe.get("C"),
        "label_noise": "confirmed"
        if "label_noise" in causes
        else "suspected"
        if "label_noise_suspected" in causes
        else "",
        "seconds": statistics.median(seconds),
    }
    if "moved" in fx:
        out.update(evaluate.label_issue_scores(ranked, set(fx["moved"])))
    return out


def evaluate_all(fixtures_dir: Path, artifacts: Path, repeats: int = 1) -> list[dict]:
    rows = []
    for path in sorted(fixtures_dir.glob("*.json")):
        fx = json.loads(path.read_text())
        features_path = artifacts / fx["job"]["id"] / TRAIN_FEATURES
        if features_path.is_file():
            rows.append(evaluate_run(fx, features_path, repeats))
    return rows


def _f(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        f"{'run':<30} {'acc':>5} {'rec.':>5} {'chance':>6} {'inf':>3} {'noise':>5} {'susp':>4} "
        f"{'P':>5} {'R':>5} {'P@R½':>5} {'p':>7} {'label noise':>11} {'s':>5}"
    ]
    for r in rows:
        lines.append(
            f"{r['run']:<30} {_f(r['accuracy'])} {_f(r['recorded_accuracy'])} {_f(r['chance']):>6} "
            f"{'yes' if r['informative'] else 'no':>3} {_f(r['noise_rate']):>5} {r['suspects']:>4} "
            f"{_f(r.get('precision')):>5} {_f(r.get('recall')):>5} {_f(r.get('precision_at_half_recall')):>5} "
            f"{'–' if r['p_value'] is None else format(r['p_value'], '.1e'):>7} {r['label_noise']:>11} {r['seconds']:>5.2f}"
        )
    noisy = [r for r in rows if "moved" in r]
    clean = [r for r in rows if "moved" not in r]
    tp, suspects, moved = (sum(r[k] for r in noisy) for k in ("true_positives", "suspects", "moved"))
    lines.append(
        f"label noise: {tp} of {moved} moved files among {suspects} suspects "
        f"(precision {_f(tp / suspects if suspects else None)}, recall {_f(tp / moved if moved else None)}); "
        f"clean labels: {sum(r['suspects'] for r in clean)} suspects over {len(clean)} runs, "
        f"{sum(r['noise_rate'] is not None and r['noise_rate'] > 0 for r in clean)} with a noise rate above 0, "
        f"{sum(r['label_noise'] == 'confirmed' for r in clean)} with label noise confirmed; "
        f"median fit {statistics.median(r['seconds'] for r in rows):.2f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--artifacts", type=Path, default=ARTIFACTS)
    ap.add_argument("--repeats", type=int, default=1, help="fits per run, for the median seconds")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    rows = evaluate_all(args.fixtures, args.artifacts, args.repeats)
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
