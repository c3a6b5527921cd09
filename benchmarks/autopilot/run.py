"""Autopilot benchmark on the diagnosis benchmark's planted causes, through the real embedded service.

    .venv/bin/python -m benchmarks.autopilot.run --seeds 2 --epochs 12
    .venv/bin/python -m benchmarks.autopilot.run --smoke        # one case, one seed, a few epochs

For every (family, planted case, seed) whose plant manifests, each strategy starts from the planted job:
the autopilot (max 3 rounds), a random remedy each round (the bar set by Kim et al. 2023: random
repairs were as good as the tools) and the seed recipe applied blindly (augmentation + dropout 0.5 +
L2 1e-4 + ReduceLROnPlateau). A repair *reaches* the healthy baseline when some job of its lineage gets
within 0.02 of the healthy run's best validation accuracy. Reported per cause: the share reached, and
the rounds and epochs (GPU-epochs: every epoch trained by any job of the lineage) spent. Targets: reach
in ≥ 90 % of manifested plants, in fewer epochs than either baseline. Each strategy runs in a tenant of its
own (the autopilot's ranking learns only from its own forks); the autopilot gets the healthy goal as its
`target`, the same stop the random remedy gets from the oracle. Not measured here: a "probe only" strategy (one
fork at the learning-rate range test's rate) needs the probes API, which this benchmark does not call yet.

Cases, data sets, the pre-trained base and the manifestation checks are imported from
benchmarks/diagnosis, unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks.autopilot.strategies import STRATEGIES, best, submit, wait_done
from benchmarks.common import ROOT, embedded_env, start_embedded_service, work_dir
from benchmarks.diagnosis.cases import BASELINE_CASE, CASES, spec_for
from benchmarks.diagnosis.families import FAMILIES
from benchmarks.diagnosis.manifest import judge
from benchmarks.diagnosis.pretrain import pretrain

WORK = work_dir("autopilot")
TOLERANCE = 0.02
ROUNDS = 3


def tenant_key(tenant: str) -> str:
    """A key of a tenant of its own, issued by the service's own command on the service's database."""
    env = {**os.environ, "PLATEAU_DATABASE_URL": embedded_env(WORK)["PLATEAU_DATABASE_URL"]}
    done = subprocess.run(
        [sys.executable, "-m", "api.keys", "create", "--tenant", tenant, "--label", "bench-autopilot"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def client(url: str, tenant: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {tenant_key(tenant)}"})


def rows(api: httpx.Client, job_id: str) -> list[dict]:
    return api.get(f"/jobs/{job_id}/metrics", params={"limit": 1000}).json()["items"]


def run_strategy(api: httpx.Client, name: str, spec: dict, goal: float, seed: int) -> dict:
    jobs = STRATEGIES[name](api, spec, rounds=ROUNDS, goal=goal, seed=seed)
    bests, epochs = zip(*(best(api, j) for j in jobs))
    top = max((b for b in bests if b is not None), default=None)
    saved = api.get(f"/jobs/{jobs[0]}/lineage").json().get("epochs_saved", 0) if name == "autopilot" else 0
    return {
        "jobs": jobs,
        "rounds": len(jobs) - 1,
        "epochs": sum(epochs),
        "epochs_saved_by_warm_starts": saved,
        "best": top,
        "reached": top is not None and top >= goal - TOLERANCE,
    }


def summarise(runs: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for cause in sorted({r["cause"] for r in runs}):
        mine = [r for r in runs if r["cause"] == cause and r["manifested"]]
        out[cause] = {"manifested": len(mine)}
        for name in STRATEGIES:
            results = [r["strategies"][name] for r in mine if name in r["strategies"]]
            if results:
                out[cause][name] = {
                    "reached": round(sum(x["reached"] for x in results) / len(results), 3),
                    "mean_rounds": round(statistics.fmean(x["rounds"] for x in results), 2),
                    "mean_epochs": round(statistics.fmean(x["epochs"] for x in results), 1),
                }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument(
        "--cases", default=",".join(c for c, case in CASES.items() if case.planted and not case.unfrozen)
    )
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed + seeds − 1")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--smoke", action="store_true", help="one family, lr_too_low, one seed, 7 epochs, autopilot")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "autopilot.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.families, args.cases, args.seeds, args.epochs = next(iter(FAMILIES)), "lr_too_low", 1, 7
        args.strategies, args.out = "autopilot", WORK / "smoke.json"
    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    pretrain(data / "base.weights.h5", WORK / "source")
    strategies = args.strategies.split(",")
    # each strategy works in a tenant of its own: the random remedy's outcomes must not feed the autopilot's
    # ranking (it learns from its tenant's measured forks)
    service, url = start_embedded_service(WORK, args.port, PLATEAU_RECONCILE_INTERVAL="5", PLATEAU_AUTH_ENABLED="true")
    runs, t0 = [], time.perf_counter()
    run_tag = f"{int(time.time())}"
    tenants = {name: client(url, f"bench-{name}-{run_tag}") for name in strategies}
    try:
        with client(url, f"bench-setup-{run_tag}") as api:
            for family in args.families.split(","):
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    healthy = submit(api, spec_for(BASELINE_CASE, data, family, seed, args.epochs))
                    wait_done(api, healthy)
                    healthy_rows = rows(api, healthy)
                    goal = max(r["val_accuracy"] for r in healthy_rows)
                    for case_id in args.cases.split(","):
                        case = CASES[case_id]
                        spec = spec_for(case_id, data, family, seed, args.epochs)
                        probe = submit(api, spec)  # the plant alone: did it manifest?
                        wait_done(api, probe)
                        n_classes = len(api.get(f"/jobs/{probe}").json()["class_counts"]["train"])
                        manifested, observed = judge(case.check, rows(api, probe), healthy_rows, n_classes)
                        run = {
                            "family": family,
                            "case": case_id,
                            "cause": case.planted,
                            "seed": seed,
                            "goal": goal,
                            "manifested": bool(manifested),
                            "observed": observed,
                            "strategies": {},
                        }
                        if manifested:
                            for name in strategies:
                                run["strategies"][name] = run_strategy(tenants[name], name, spec, goal, seed)
                        runs.append(run)
                        print(json.dumps(run), flush=True)
    finally:
        for api_of_strategy in tenants.values():
            api_of_strategy.close()
        service.stop(timeout=120)
    result = {
        "wall_seconds": round(time.perf_counter() - t0),
        "epochs": args.epochs,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "families": args.families.split(","),
        "rounds": ROUNDS,
        "tolerance": TOLERANCE,
        "by_cause": summarise(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result["by_cause"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
