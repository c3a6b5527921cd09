"""Autopilot benchmark on the diagnosis benchmark's planted causes, through the real embedded service.

    .venv/bin/python -m benchmarks.autopilot.run --families textures,colours,scenes --held-out scenes \\
        --seed-list 0,1,2 --epochs 12 --out benchmarks/results/autopilot-3x3.json
    .venv/bin/python -m benchmarks.autopilot.run ... --resume     # skip the cases already in --out
    .venv/bin/python -m benchmarks.autopilot.run --smoke           # one case, one seed, a few epochs

For every (family, planted case, seed) whose plant manifests, each strategy starts from the planted job:
the autopilot (max 3 rounds), a random remedy each round (the bar set by Kim et al. 2023: random
repairs were as good as the tools), the seed recipe applied blindly (augmentation + dropout 0.5 +
L2 1e-4 + ReduceLROnPlateau) and "probe only" (the learning-rate range test on the planted job, then one
fork at its suggested rate). A repair *reaches* the healthy baseline when some job of its lineage gets
within 0.02 of the healthy run's best validation accuracy. Recorded per run: whether it reached, the rounds
and epochs (GPU-epochs: every epoch trained by any job of the lineage) spent, the epochs warm starts did not
train again, the lineage's best job, and every step of the lineage as `GET /jobs/{id}/lineage` reads it
(remedies, patches, the evidence that chose them, the measured effect); "probe only" adds the range test's
seconds, counted apart from the epochs. Targets: reach in ≥ 90 % of manifested plants, in fewer epochs than
the oracle-stopped random remedy. Each strategy runs in a tenant of its own (the autopilot's ranking learns
only from its own forks); the autopilot gets the healthy goal as its `target`, the same stop the random
remedy gets from the oracle.

Every (family, seed) needs one healthy run (the goal), a rerun of it with another training seed (the control:
how often the healthy recipe itself reaches its own goal by the same rule, the ceiling of the target), and every (family, case, seed) one plant-check job
(did the plant manifest?) besides the strategies' lineages; their epochs are recorded as overhead. The
--out file is rewritten after every strategy of every case, so an interrupted run keeps its work; --resume
reads it back, reuses its tenants and healthy runs, cancels the jobs the interrupted run left going, and runs
only the (case, strategy) pairs it lacks.
`benchmarks/autopilot/table.py` reads the file.

Cases, data sets, the pre-trained base and the manifestation checks are imported from
benchmarks/diagnosis, unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import httpx

from benchmarks.autopilot.strategies import STRATEGIES, best, submit, wait_done
from benchmarks.common import ROOT, embedded_env, start_embedded_service, work_dir
from benchmarks.diagnosis.cases import BASELINE_CASE, CASES, spec_for
from benchmarks.diagnosis.families import FAMILIES
from benchmarks.diagnosis.manifest import judge
from benchmarks.diagnosis.pretrain import pretrain
from contract.status import ActiveStatus

WORK = work_dir("autopilot")
TOLERANCE = 0.02
RERUN_SEED_OFFSET = 1000  # the healthy control's training seed: another initial head and shuffling, same images
ROUNDS = 3
DEFAULT_FAMILIES = "textures,colours,scenes"  # two development families and one held out, each of its own kind
DEFAULT_HELD_OUT = "scenes"  # never looked at while developing the autopilot
# what the manifestation checks read of the healthy run (benchmarks/diagnosis/manifest.py)
HEALTHY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "train_eval_accuracy")


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


def lineage_record(body: dict) -> dict:
    """What the run record keeps of `GET /jobs/{id}/lineage`: each step's remedies, patch, the evidence that chose
    them and the measured effect, the end of an autopilot, the epochs warm starts saved and the best job."""
    ap = body.get("autopilot") or {}
    return {
        "root_id": body["root_id"],
        "best_job_id": body.get("best_job_id"),
        "best": body.get("best"),
        "epochs_saved": body.get("epochs_saved", 0),
        "end_reason": ap.get("end_reason"),
        "end_detail": ap.get("end_detail"),
        "steps": [
            {
                "round": s["round"],
                "job_id": s["job_id"],
                "status": s["status"],
                "epochs": s["epochs"],
                "best": s["best"],
                "diagnosis": {k: s["diagnosis"].get(k) for k in ("verdict", "primary_cause", "confidence")},
                "cause": s.get("cause"),
                "remedies": s.get("remedies", []),
                "patch": s.get("patch", {}),
                "parent_patch_values": s.get("parent_patch_values", {}),
                "gain": s.get("gain"),
                "direction": (s.get("comparison") or {}).get("direction"),
                "test": (s.get("comparison") or {}).get("test"),
                "start": s.get("start"),
                "epochs_saved": s.get("epochs_saved", 0),
                "evidence": s.get("evidence", {}),
            }
            for s in body["steps"]
        ],
    }


def run_strategy(api: httpx.Client, name: str, spec: dict, goal: float, seed: int, rounds: int = ROUNDS) -> dict:
    start = time.perf_counter()
    repair = STRATEGIES[name](api, spec, rounds=rounds, goal=goal, seed=seed)
    jobs = repair.jobs
    bests, epochs = zip(*(best(api, j) for j in jobs))
    top = max((b for b in bests if b is not None), default=None)
    # an autopilot's lineage is read from its root; a chain of manual forks from its last job back to the root
    lineage = lineage_record(api.get(f"/jobs/{jobs[0] if name == 'autopilot' else jobs[-1]}/lineage").json())
    return {
        "jobs": jobs,
        "rounds": len(jobs) - 1,
        "epochs": sum(epochs),
        "epochs_saved_by_warm_starts": lineage["epochs_saved"],
        "best": top,
        "best_job_id": lineage["best_job_id"],
        "reached": top is not None and top >= goal - TOLERANCE,
        "seconds": round(time.perf_counter() - start),
        "lineage": lineage,
        **repair.notes,
    }


def healthy_rerun(api: httpx.Client, data: Path, family: str, seed: int, epochs: int, goal: float) -> dict:
    """The control: the healthy recipe again on the same images with another training seed (initial head and
    shuffling). How often it "reaches" its own goal is how often any repair could, by the same rule."""
    spec = spec_for(BASELINE_CASE, data, family, seed, epochs)
    job = submit(api, {**spec, "seed": RERUN_SEED_OFFSET + seed, "name": f"{spec['name']}/rerun"})
    wait_done(api, job)
    top, trained = best(api, job)
    return {"job_id": job, "best": top, "epochs": trained, "reached": top is not None and top >= goal - TOLERANCE}


def drop_artifacts(job_ids: list[str]) -> None:
    """A finished case's checkpoints and cached features are never read again (its records live in the database);
    kept, a run of three seeds fills tens of gigabytes."""
    for job_id in job_ids:
        shutil.rmtree(WORK / "artifacts" / job_id, ignore_errors=True)


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


def cancel_left_over(api: httpx.Client) -> list[str]:
    """Cancel the tenant's queued and running jobs: what an interrupted run left going (an autopilot lineage goes
    on in the service) would otherwise train beside the resumed one and feed its tenant's ranking."""
    cancelled = []
    for status in get_args(ActiveStatus):
        for job in api.get("/jobs", params={"status": status, "limit": 1000}).json()["items"]:
            if api.post(f"/jobs/{job['id']}/cancel").status_code == 202:
                cancelled.append(job["id"])
    return cancelled


def case_key(family: str, case: str, seed: int) -> str:
    return f"{family}/{case}/s{seed}"


def seeds_of(args: argparse.Namespace) -> list[int]:
    if args.seed_list:
        return [int(s) for s in args.seed_list.split(",") if s.strip()]
    return list(range(args.first_seed, args.first_seed + args.seeds))


def new_result(epochs: int, run_tag: str) -> dict:
    return {
        "wall_seconds": 0,
        "epochs": epochs,
        "rounds": ROUNDS,
        "tolerance": TOLERANCE,
        "families": [],
        "held_out": [],
        "seeds": [],
        "cases": [],
        "strategies": [],
        "tenants": {"setup": f"bench-setup-{run_tag}"},
        "healthy": {},
        "overhead": {"healthy_epochs": 0, "plant_check_epochs": 0},
        "by_cause": {},
        "runs": [],
    }


def load(out: Path, resume: bool, args: argparse.Namespace, strategies: list[str], run_tag: str) -> dict:
    """The result so far: the --out file when resuming (refused if it was run with other epochs, rounds or
    tolerance), a new one otherwise."""
    if not (resume and out.is_file()):
        result = new_result(args.epochs, run_tag)
    else:
        result = json.loads(out.read_text())
        mismatch = {
            k: (result.get(k), v)
            for k, v in (("epochs", args.epochs), ("rounds", ROUNDS), ("tolerance", TOLERANCE))
            if result.get(k) != v
        }
        if mismatch:
            raise SystemExit(f"--resume: {out} was run with other settings (recorded, asked): {mismatch}")
        for key, empty in (("tenants", {"setup": f"bench-setup-{run_tag}"}), ("healthy", {}), ("held_out", [])):
            result.setdefault(key, empty)
        result.setdefault("overhead", {"healthy_epochs": 0, "plant_check_epochs": 0})
    for name in strategies:
        result["tenants"].setdefault(name, f"bench-{name}-{run_tag}")
    for key, new in (
        ("families", args.families.split(",")),
        ("held_out", [f for f in args.held_out.split(",") if f]),
        ("seeds", seeds_of(args)),
        ("cases", args.cases.split(",")),
        ("strategies", strategies),
    ):
        old = result.get(key) if isinstance(result.get(key), list) else []
        result[key] = old + [x for x in new if x not in old]
    return result


def save(out: Path, result: dict) -> None:
    """Rewrite --out whole, through a temporary file, so an interruption leaves the last complete one."""
    result["by_cause"] = summarise(result["runs"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, out)


def missing(record: dict | None, strategies: list[str]) -> list[str]:
    """The strategies a (family, case, seed) still needs: all of them when it was never checked, none when its
    plant did not manifest."""
    if record is None:
        return list(strategies)
    if not record["manifested"]:
        return []
    return [s for s in strategies if s not in record["strategies"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=DEFAULT_FAMILIES, help=f"comma-separated, of {','.join(FAMILIES)}")
    parser.add_argument(
        "--held-out",
        default=DEFAULT_HELD_OUT,
        help="families never looked at while developing the autopilot: the table reports them apart",
    )
    parser.add_argument(
        "--cases", default=",".join(c for c, case in CASES.items() if case.planted and not case.unfrozen)
    )
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds, from --first-seed")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed + seeds − 1")
    parser.add_argument("--seed-list", default="", help="these seeds (e.g. 0,1,2), instead of --seeds/--first-seed")
    parser.add_argument("--epochs", type=int, default=12, help="of every job the benchmark submits")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--resume", action="store_true", help="keep --out's cases and run only what it lacks")
    parser.add_argument("--smoke", action="store_true", help="one family, lr_too_low, one seed, 7 epochs, autopilot")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "autopilot.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.families, args.cases, args.seeds, args.epochs = next(iter(FAMILIES)), "lr_too_low", 1, 7
        args.seed_list, args.held_out = "", ""
        args.strategies, args.out = "autopilot", WORK / "smoke.json"
    strategies = args.strategies.split(",")
    unknown = (
        [s for s in strategies if s not in STRATEGIES]
        + [f for f in args.families.split(",") if f not in FAMILIES]
        + [c for c in args.cases.split(",") if c not in CASES]
    )
    if unknown:
        raise SystemExit(f"unknown strategies, families or cases: {', '.join(unknown)}")
    if args.out.is_file() and not (args.resume or args.smoke):
        raise SystemExit(f"{args.out} exists: --resume goes on with it, or name another --out")
    seeds = seeds_of(args)
    result = load(args.out, args.resume, args, strategies, f"{int(time.time())}")
    done = {case_key(r["family"], r["case"], r["seed"]): r for r in result["runs"]}

    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    pretrain(data / "base.weights.h5", WORK / "source")
    # each strategy works in a tenant of its own: the random remedy's outcomes must not feed the autopilot's
    # ranking (it learns from its tenant's measured forks); a resumed run goes on in the same tenants
    service, url = start_embedded_service(
        WORK,
        args.port,
        PLATEAU_RECONCILE_INTERVAL="5",
        PLATEAU_AUTH_ENABLED="true",
        # nothing can be downloaded here: the pre-trained base stands in for the ImageNet weights, as an
        # air-gapped site's local copy would, so a switch to them (use_imagenet_weights) can run for every strategy
        PLATEAU_IMAGENET_WEIGHTS_FILE=str((data / "base.weights.h5").resolve()),
    )
    t0, wall_before = time.perf_counter(), result["wall_seconds"]
    tenants = {name: client(url, result["tenants"][name]) for name in strategies}
    try:
        with client(url, result["tenants"]["setup"]) as api:
            if args.resume:
                for tenant_api in (api, *tenants.values()):
                    left = cancel_left_over(tenant_api)
                    if left:
                        print(f"cancelled {len(left)} jobs an interrupted run left going", flush=True)
            for family in args.families.split(","):
                for seed in seeds:
                    todo = [
                        c for c in args.cases.split(",") if missing(done.get(case_key(family, c, seed)), strategies)
                    ]
                    if not todo:
                        continue
                    healthy = result["healthy"].get(f"{family}/s{seed}")
                    if healthy is None:
                        job = submit(api, spec_for(BASELINE_CASE, data, family, seed, args.epochs))
                        wait_done(api, job)
                        kept = [{k: r.get(k) for k in HEALTHY_KEYS} for r in rows(api, job)]
                        goal = max((r["val_accuracy"] for r in kept if r["val_accuracy"] is not None), default=None)
                        healthy = {"job_id": job, "goal": goal, "rows": kept}
                        result["healthy"][f"{family}/s{seed}"] = healthy
                        result["overhead"]["healthy_epochs"] += len(kept)
                        save(args.out, result)
                    if healthy["goal"] is not None and "rerun" not in healthy:
                        healthy["rerun"] = healthy_rerun(api, data, family, seed, args.epochs, healthy["goal"])
                        result["overhead"]["healthy_epochs"] += healthy["rerun"]["epochs"]
                        save(args.out, result)
                    if healthy["goal"] is None:
                        print(f"{family}/s{seed}: the healthy run recorded no val_accuracy; skipped", flush=True)
                        continue
                    for case_id in todo:
                        key = case_key(family, case_id, seed)
                        case = CASES[case_id]
                        spec = spec_for(case_id, data, family, seed, args.epochs)
                        run = done.get(key)
                        if run is None:
                            check = submit(api, spec)  # the plant alone: did it manifest?
                            wait_done(api, check)
                            check_rows = rows(api, check)
                            n_classes = len(api.get(f"/jobs/{check}").json()["class_counts"]["train"])
                            manifested, observed = judge(case.check, check_rows, healthy["rows"], n_classes)
                            result["overhead"]["plant_check_epochs"] += len(check_rows)
                            run = {
                                "family": family,
                                "case": case_id,
                                "cause": case.planted,
                                "seed": seed,
                                "goal": healthy["goal"],
                                "manifested": bool(manifested),
                                "judged": manifested is not None,
                                "observed": observed,
                                "plant_check_job_id": check,
                                "strategies": {},
                            }
                            result["runs"].append(run)
                            done[key] = run
                            save(args.out, result)
                        for name in missing(run, strategies):
                            run["strategies"][name] = run_strategy(tenants[name], name, spec, run["goal"], seed)
                            result["wall_seconds"] = wall_before + round(time.perf_counter() - t0)
                            save(args.out, result)
                        drop_artifacts(
                            [run["plant_check_job_id"], *(j for x in run["strategies"].values() for j in x["jobs"])]
                        )
                        print(json.dumps({k: v for k, v in run.items() if k != "strategies"}), flush=True)
    finally:
        for api_of_strategy in tenants.values():
            api_of_strategy.close()
        service.stop(timeout=120)
    result["wall_seconds"] = wall_before + round(time.perf_counter() - t0)
    save(args.out, result)
    print(json.dumps(result["by_cause"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
