"""Latency of `analysis.diagnose` on a 10,000-epoch history that records every signal.

    .venv/bin/python -m benchmarks.analysis_latency.run [--epochs 10000] [--runs 30]

Builds two seeded synthetic histories in memory (no database, no HTTP) in which every field of
`EpochRecord` is set on every epoch — the Keras metrics, learning rate, inference-mode train
metrics, batch-loss statistics, non-finite batch counts, gradient norm, head and base update
ratios, per-class validation recall and support, and the confusion matrix — with a job context
that has class counts, a spec and learning-rate cuts:

- `stagnating`: validation loss turns up while training loss keeps falling (overfitting), the
  learning rate is cut twice, accuracy plateaus; several rules fire and build evidence.
- `converged`: both losses keep falling together and accuracy saturates; only the plateau rule fires,
  the others run over the whole history and stay quiet.

Each history is diagnosed `--runs` times after one warm-up call; the median, p90 and min wall
times are written to `benchmarks/results/analysis_latency.json`. Building the `EpochRecord`
objects from row dicts (what `GET /jobs/{id}/analysis` also does) is timed separately and is not
part of the `diagnose` figure. Then `benchmarks/analysis_latency/endpoint.py` times the endpoint on the
stagnating history stored in PostgreSQL, cold and warm. Target: median < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from analysis import EpochRecord, JobContext, diagnose
from benchmarks.common import ROOT, machine, summary, timed

RESULTS = ROOT / "benchmarks" / "results" / "analysis_latency.json"
TARGET_MS = 50.0
CLASSES = ["circle", "square", "triangle", "cross"]
SPEC = {
    "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 75},
    "model": {"weights": "imagenet", "trainable": "head", "dense_units": 1024},
    "regularization": {"dropout": 0.2, "l2": 0.0, "label_smoothing": 0.0},
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
    "callbacks": {"reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.1, "patience": 10}},
    "batch_size": 32,
    "epochs": 10_000,
}


def rows(n: int, kind: str, seed: int = 0) -> list[dict]:
    """Worker-shaped epoch rows (epochs count from 1), every signal present."""
    rng = random.Random(seed)
    cuts = (n // 2, (3 * n) // 4)
    support = {c: 40 for c in CLASSES}
    out = []
    for e in range(1, n + 1):
        t = e / n
        lr = 1e-3 * (0.1 ** sum(e > c for c in cuts))
        train_loss = 1.2 * math.exp(-4 * t) + 0.02 + rng.gauss(0, 0.01)
        if kind == "stagnating":  # validation bottoms out a fifth of the way in, then climbs
            val_loss = 0.55 + 0.6 * (t - 0.2) ** 2 + rng.gauss(0, 0.02)
            val_acc = min(0.8, 0.4 + 2 * t) - 0.05 * max(0.0, t - 0.2) + rng.gauss(0, 0.01)
        else:
            val_loss = train_loss * 1.05 + rng.gauss(0, 0.01)
            val_acc = min(0.97, 0.4 + 0.6 * (1 - math.exp(-4 * t))) + rng.gauss(0, 0.005)
        train_acc = min(0.999, 0.4 + 0.6 * (1 - math.exp(-4 * t))) + rng.gauss(0, 0.005)
        recall = {c: max(0.0, min(1.0, val_acc + rng.gauss(0, 0.05))) for c in CLASSES}
        confusion = []
        for i, c in enumerate(CLASSES):
            hit = round(recall[c] * support[c])
            row = [0] * len(CLASSES)
            row[i] = hit
            row[(i + 1) % len(CLASSES)] = support[c] - hit
            confusion.append(row)
        out.append(
            {
                "epoch": e,
                "loss": train_loss + 0.05,
                "accuracy": train_acc - 0.02,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "learning_rate": lr,
                "epoch_seconds": 3.0 + rng.random(),
                "images_per_second": 120 + rng.random(),
                "train_eval_loss": train_loss,
                "train_eval_accuracy": train_acc,
                "batch_loss_mean": train_loss + 0.05,
                "batch_loss_std": 0.1 + rng.random() * 0.02,
                "batch_loss_max": train_loss + 0.4,
                "nonfinite_batches": 0,
                "grad_norm": 1.0 + rng.random(),
                "update_ratio_head": lr * 1.0,
                "update_ratio_base": lr * 0.1,
                "val_recall": recall,
                "val_support": support,
                "confusion": confusion,
            }
        )
    return out


def context(n: int) -> JobContext:
    counts = {c: 400 for c in CLASSES}
    return JobContext(
        spec={**SPEC, "epochs": n},
        class_counts_train=counts,
        class_counts_val={c: 40 for c in CLASSES},
        planned_epochs=n,
        lr_reductions=[n // 2 + 1, (3 * n) // 4 + 1],
        status="succeeded",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-endpoint", action="store_true", help="skip GET /jobs/{id}/analysis on a stored job (needs PostgreSQL)"
    )
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = parser.parse_args()

    ctx = context(args.epochs)
    results = {}
    for kind in ("stagnating", "converged"):
        raw = rows(args.epochs, kind)
        records = [EpochRecord.model_validate(r) for r in raw]
        d = diagnose(records, ctx)
        diag = summary(timed(lambda: diagnose(records, ctx), args.runs))
        build = summary(timed(lambda: [EpochRecord.model_validate(r) for r in raw], max(5, args.runs // 4)))
        results[kind] = {
            "diagnose": diag,
            "build_records": build,
            "verdict": d.verdict,
            "primary_cause": d.primary_cause,
            "findings": sorted({f.cause for f in d.findings}),
            "abstentions": sorted({a.rule for a in d.abstentions}) if d.abstentions else [],
            "epochs_analysed": d.epochs_analysed,
            "meets_target": diag["median_ms"] < TARGET_MS,
        }
        print(
            f"{kind:11s} diagnose median {diag['median_ms']:8.2f} ms  p90 {diag['p90_ms']:8.2f} ms  "
            f"(build records {build['median_ms']:.1f} ms)  verdict={d.verdict} findings={results[kind]['findings']}"
        )

    endpoint = None
    if not args.no_endpoint:
        from benchmarks.analysis_latency.endpoint import measure

        endpoint = measure(rows(args.epochs, "stagnating"), {**SPEC, "epochs": args.epochs}, args.runs)
        print(
            f"endpoint    GET /jobs/{{id}}/analysis  cold median {endpoint['cold']['median_ms']:.1f} ms  "
            f"after a new epoch {endpoint['after_new_epoch']['median_ms']:.1f} ms  "
            f"warm median {endpoint['warm']['median_ms']:.2f} ms  (rows read and validated in "
            f"{endpoint['read_and_validate_rows_ms']:.0f} ms)"
        )

    out = {
        "benchmark": "analysis_latency",
        "command": f"python -m benchmarks.analysis_latency.run --epochs {args.epochs} --runs {args.runs}",
        "epochs": args.epochs,
        "target_median_ms": TARGET_MS,
        "results": results,
        "endpoint": endpoint,
        "machine": machine(),
        "note": args.note,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
