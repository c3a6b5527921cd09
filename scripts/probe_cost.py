"""What the four probes of one small head-only job cost, with the features its training stored and without them.

Trains one job (generated shapes, 75 px, frozen random-init base, features cached), then runs lr_range,
memorization, linear_probe and label_check in that order, in a fresh process each time, alternating: "computed"
(the job's stored features ignored: the probes build Inception-V3 and run it over the training images, as before)
and "stored" (they read the job's train_features.npz). Keras is imported before the probes and timed apart (a
worker that trained the job has it loaded). Prints each probe's seconds and the medians.

With `--baseline DIR` the probes of another checkout (e.g. `git worktree add /tmp/before HEAD~1`) run too, on the
same job, alternating with this one's in the same run: on a machine shared with other work, only medians measured
side by side compare.

    .venv/bin/python -m scripts.probe_cost [--repeats 3] [--train 44] [--epochs 10] [--modes computed stored]
        [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ORDER = ("lr_range", "memorization", "linear_probe", "label_check")


def spec_dict(epochs: int) -> dict:
    return {
        "name": "probe-cost",
        "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 75},
        "model": {"weights": None, "trainable": "head", "dense_units": 32},
        "batch_size": 8,
        "epochs": epochs,
        "seed": 7,
    }


def train_job(root: Path, *, train: int, epochs: int) -> dict:
    from contract.spec import JobSpec
    from samples.shapes import generate
    from worker.training.fit import train as fit
    from worker.training.sink import MemorySink

    generate(root / "data" / "shapes", classes=3, train=train, val=8, size=80, seed=1)
    workdir = root / "jobs" / str(uuid.uuid4())
    spec = spec_dict(epochs)
    t0 = time.perf_counter()
    result = fit(
        JobSpec.model_validate(spec),
        data_root=root / "data",
        workdir=workdir,
        sink=MemorySink(),
        stop=threading.Event(),
    )
    assert result.status == "succeeded", result
    return {"spec": spec, "workdir": str(workdir), "model_path": result.model_path, "seconds": time.perf_counter() - t0}


def run_probes(job: dict, root: Path, mode: str) -> dict[str, float]:
    """One worker's view: the four probes of the job in order, each timed as run.py times it."""
    from contract.spec import JobSpec
    from worker.probes import context
    from worker.probes.budget import Budget
    from worker.probes.run import PROBES, Target

    spec = JobSpec.model_validate(job["spec"])
    workdir = Path(job["workdir"])
    t0 = time.perf_counter()
    import keras  # noqa: F401 - loaded already in a worker that has trained a job: timed apart

    out = {"import": time.perf_counter() - t0}
    for name in ORDER:
        t0 = time.perf_counter()
        data = context.load_data(spec, data_root=root / "data", verify=False)
        weights = context.latest_weights(model_path=job["model_path"], workdir=workdir)
        # one job id throughout: the in-process feature cache serves the later probes, as on a worker
        target = Target(uuid.UUID(int=1), spec, data, weights, root / "data", workdir if mode == "stored" else None)
        PROBES[name](target, Budget(120), {})
        out[name] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", type=int, default=44, help="training images per class (3 classes)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--modes", nargs="+", choices=("computed", "stored"), default=["computed", "stored"])
    parser.add_argument("--baseline", type=Path, help="another checkout whose probes run alongside, on the same job")
    parser.add_argument("--child", nargs=3, metavar=("JOB_JSON", "ROOT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(Path(args.child[0]).read_text())
        print(json.dumps(run_probes(job, Path(args.child[1]), args.child[2])))
        return
    with tempfile.TemporaryDirectory(prefix="plateau-probe-cost-") as tmp:
        root = Path(tmp)
        job = train_job(root, train=args.train, epochs=args.epochs)
        job_file = root / "job.json"
        job_file.write_text(json.dumps(job))
        print(f"training: {job['seconds']:.2f} s ({3 * args.train} training images, {args.epochs} epochs)")
        here = Path(__file__).resolve().parents[1]
        trees = {"": here, " (baseline)": args.baseline.resolve()} if args.baseline else {"": here}
        times: dict[str, list[dict[str, float]]] = {f"{m}{t}": [] for m in args.modes for t in trees}
        for i in range(args.repeats):
            for mode in args.modes:
                for tag, tree in trees.items():
                    done = subprocess.run(
                        [sys.executable, "-m", "scripts.probe_cost", "--child", str(job_file), str(root), mode],
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=tree,
                        env={**os.environ, "PYTHONPATH": str(tree)},
                    )
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                    times[f"{mode}{tag}"].append(row)
                    print(f"{mode + tag:19} #{i + 1}: " + ", ".join(f"{n} {s:.2f}" for n, s in row.items()))
        for label, rows in times.items():
            med = {n: statistics.median(r[n] for r in rows) for n in ("import", *ORDER)}
            total = statistics.median(sum(r[n] for n in ORDER) for r in rows)
            print(
                f"median {label:19}: "
                + ", ".join(f"{n} {s:.2f}" for n, s in med.items())
                + f"; the four probes {total:.2f} s = {total / job['seconds']:.2f}x training"
            )


if __name__ == "__main__":
    main()
