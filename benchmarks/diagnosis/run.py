"""Planted-cause evaluation of the stagnation analysis, through the real service.

    .venv/bin/python -m benchmarks.diagnosis.run --seeds 2 --epochs 8

Pre-trains an Inception-V3 base once (cached), writes target data sets with planted causes, starts
the embedded service, submits every run as a job, and scores `GET /jobs/{id}/analysis` against what
was planted: per-cause precision and recall, and the false-alarm rate on healthy runs. Targets A
and B are different generated data sets; the rule thresholds are the published defaults on both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.diagnosis import plant
from benchmarks.diagnosis.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "var" / "bench-diagnosis"

# planted condition → (data set builder, spec changes, causes that count as detecting it)
CONDITIONS = {
    "healthy": (plant.base_set, {}, set()),
    "label_noise": (plant.noisy, {}, {"label_noise_suspected"}),
    "imbalance": (plant.imbalanced, {}, {"class_imbalance"}),
    "small_no_reg": (plant.shrunken, {"regularization": {"dropout": 0.0}, "model": {"dense_units": 1024}},
                     {"overfitting"}),
    "lr_x10": (plant.base_set, {"optimizer": {"learning_rate": 1e-2}}, {"learning_rate_too_high"}),
    "lr_x0.01": (plant.base_set, {"optimizer": {"learning_rate": 1e-5}}, {"learning_rate_too_low"}),
    "frozen_heavy_dropout": (plant.base_set, {"regularization": {"dropout": 0.9}},
                             {"regularization_too_strong", "base_too_frozen"}),
}
SYMPTOM_ONLY = {"plateau"}  # a symptom, not a cause: not counted as a false alarm


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def spec_for(data_dir: Path, changes: dict, seed: int, epochs: int) -> dict:
    base = {
        "dataset": {"train_dir": f"{data_dir.name}/train", "val_dir": f"{data_dir.name}/val", "image_size": 75},
        "model": {"weights": "base.weights.h5", "trainable": "head", "dense_units": 128},
        "regularization": {"dropout": 0.2},
        "optimizer": {"name": "adam", "learning_rate": 1e-3},
        "batch_size": 16, "epochs": epochs, "seed": seed,
    }
    return merge(base, changes)


def start_service(port: int, worker: bool = True) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PLATEAU_DATA_ROOT": str(WORK / "data"),
           "PLATEAU_DATABASE_URL": f"sqlite:///{WORK}/plateau.db", "PLATEAU_BROKER_URL": "filesystem://",
           "PLATEAU_BROKER_DIR": str(WORK / "broker"), "PLATEAU_ARTIFACTS_DIR": str(WORK / "artifacts")}
    log = open(WORK / "service.log", "ab")
    args = [sys.executable, "-m", "api.embedded", "--port", str(port)] + ([] if worker else ["--no-worker"])
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def observe(api: httpx.Client, run: dict) -> dict:
    """The job's outcome and the service's diagnosis of it."""
    job = api.get(f"/jobs/{run['job_id']}").json()
    diag = api.get(f"/jobs/{run['job_id']}/analysis").json()
    last = (api.get(f"/jobs/{run['job_id']}/metrics", params={"limit": 1000}).json()["items"] or [{}])[-1]
    return {**{k: run[k] for k in ("target", "condition", "seed", "job_id")},
            "status": job["status"], "error": job["error"], "verdict": diag["verdict"],
            "primary_cause": diag["primary_cause"], "causes": sorted({f["cause"] for f in diag["findings"]}),
            "train_eval_accuracy": last.get("train_eval_accuracy"), "val_accuracy": last.get("val_accuracy"),
            "val_loss": last.get("val_loss")}


def rescore(args: argparse.Namespace) -> int:
    """Diagnose the stored runs again with the current rules (no retraining)."""
    previous = json.loads(args.out.read_text())
    service = start_service(args.port, worker=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60) as api:
            wait_ready(api)
            runs = [observe(api, run) for run in previous["runs"]]
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(120)
    return write(args, runs, previous["wall_seconds"])


def write(args: argparse.Namespace, runs: list[dict], wall: int) -> int:
    targets = sorted({r["target"] for r in runs})
    result = {"wall_seconds": wall, "epochs": args.epochs, "seeds": args.seeds, "runs": runs, "all": score(runs),
              "by_target": {t: score([r for r in runs if r["target"] == t]) for t in targets}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("all", "by_target", "wall_seconds")}, indent=2))
    return 0


def wait_ready(api: httpx.Client) -> None:
    for _ in range(240):
        try:
            if api.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("service did not start; see var/bench-diagnosis/service.log")


def score(runs: list[dict]) -> dict:
    causes = sorted({c for _, _, accepted in CONDITIONS.values() for c in accepted})
    table = {}
    for cause in causes:
        planted = [r for r in runs if cause in CONDITIONS[r["condition"]][2]]
        flagged = [r for r in runs if cause in r["causes"]]
        hits = [r for r in flagged if cause in CONDITIONS[r["condition"]][2]]
        table[cause] = {
            "planted": len(planted), "flagged": len(flagged), "true_positive": len(hits),
            "precision": round(len(hits) / len(flagged), 3) if flagged else None,
            "recall": round(sum(cause in r["causes"] for r in planted) / len(planted), 3) if planted else None,
        }
    healthy = [r for r in runs if r["condition"] == "healthy"]
    alarms = [r for r in healthy if set(r["causes"]) - SYMPTOM_ONLY]
    return {"per_cause": table, "healthy_runs": len(healthy), "false_alarms": len(alarms),
            "false_alarm_rate": round(len(alarms) / len(healthy), 3) if healthy else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--targets", default="A,B")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "diagnosis.json")
    parser.add_argument("--rescore", action="store_true",
                        help="diagnose the runs stored in --out again with the current rules, without training")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args)
    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    pretrain(data / "base.weights.h5", WORK / "source")
    plan = []
    for target in args.targets.split(","):
        for condition in args.conditions.split(","):
            build, changes, _ = CONDITIONS[condition]
            folder = build(data, target)
            for seed in range(args.seeds):
                plan.append({"target": target, "condition": condition, "seed": seed,
                             "spec": spec_for(folder, changes, seed, args.epochs)})
    service = start_service(args.port)
    runs = []
    t0 = time.perf_counter()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60) as api:
            wait_ready(api)
            for item in plan:
                r = api.post("/jobs", json={**item["spec"], "name": f"{item['target']}/{item['condition']}/{item['seed']}"})
                if r.status_code != 202:
                    raise SystemExit(f"submit refused ({r.status_code}): {r.text}")
                item["job_id"] = r.json()["id"]
            for item in plan:
                while api.get(f"/jobs/{item['job_id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
                    time.sleep(2)
                runs.append(observe(api, item))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(120)
    return write(args, runs, round(time.perf_counter() - t0))


if __name__ == "__main__":
    sys.exit(main())
