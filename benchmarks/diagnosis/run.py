"""Planted-cause evaluation of the stagnation analysis, through the real service; records the corpus.

    .venv/bin/python -m benchmarks.diagnosis.run --seeds 3 --epochs 12 --families shapes,textures

Pre-trains an Inception-V3 base once (cached), writes each family's data sets with planted causes, starts
the embedded service (API + Celery worker + SQLite), and submits every run as a real job, one at a time.
For every finished job it stores the epoch rows and the job context exactly as the analysis endpoint
builds them (models/analysis/service.py) as one fixture, tests/analysis/corpus/<family>/<case>-s<seed>.json,
judges whether the plant manifested (benchmarks/diagnosis/manifest.py), and finally scores the corpus
with analysis/evaluate.py into benchmarks/results/diagnosis.json. Runs whose fixture exists with the same
spec and base weights are skipped (resume); `--rerun` records them again.

With `--probes`, each finished job then also gets all four probes on demand (POST /jobs/{id}/probes, one
budget each); their results and durations are stored in the fixture beside the context recorded before
they ran (`probes`, `probe_runs`), with the job's own training time and, for a label-noise plant, the files
that were moved (`moved`), so the same runs can be scored with and without probes
(benchmarks/diagnosis/heldout.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import uuid
from pathlib import Path

import httpx

from analysis import evaluate
from benchmarks.common import ROOT, embedded_env, start_embedded_service, work_dir
from benchmarks.diagnosis import plant
from benchmarks.diagnosis.cases import BASELINE_CASE, CASES, spec_for
from benchmarks.diagnosis.families import FAMILIES
from benchmarks.diagnosis.manifest import judge
from benchmarks.diagnosis.pretrain import pretrain
from contract.status import TERMINAL_STATUSES

WORK = work_dir("diagnosis")
DONE = TERMINAL_STATUSES


def compact(x):
    """Floats to 5 significant digits, recursively: fixtures stay small and diffable."""
    if isinstance(x, float):
        return float(f"{x:.5g}") if math.isfinite(x) else x
    if isinstance(x, dict):
        return {k: compact(v) for k, v in x.items()}
    if isinstance(x, list):
        return [compact(v) for v in x]
    return x


def recorded(job_id: str) -> tuple[dict, list[dict]]:
    """The JobContext and epoch rows the analysis endpoint passes to `analysis.diagnose`, read by its own code."""
    from sqlmodel import Session

    from models.analysis import service
    from models.db import make_engine
    from models.tables import Job

    engine = make_engine(embedded_env(WORK)["PLATEAU_DATABASE_URL"])
    try:
        with Session(engine) as session:
            job = session.get(Job, uuid.UUID(job_id))
            ctx = service.context(session, job)
            rows = service.history(session, job)
            return ctx.model_dump(mode="json"), [r.model_dump(exclude_none=True) for r in rows]
    finally:
        engine.dispose()


def moved_files(train_dir: Path) -> list[str]:
    """Training files a label-noise plant moved: plant.noisy names each copy `<origin class>-<file>`."""
    return sorted(
        f"{f.parent.name}/{f.name}"
        for f in train_dir.glob("*/*")
        if "-" in f.name and f.name.split("-", 1)[0] != f.parent.name
    )


def seconds_between(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not (start and end):
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


def run_probes(api: httpx.Client, job_id: str, budget: int) -> tuple[dict, list[dict]]:
    """All four probes on the finished job, waited for: newest result by name, and each probe's run."""
    r = api.post(f"/jobs/{job_id}/probes", json={"budget_seconds": budget})
    if r.status_code != 202:
        raise SystemExit(f"probes refused ({r.status_code}): {r.text}")
    ids = {p["id"] for p in r.json()["items"]}
    while True:
        items = [p for p in api.get(f"/jobs/{job_id}/probes").json()["items"] if p["id"] in ids]
        if all(p["status"] not in ("queued", "running") for p in items):
            break
        time.sleep(1)
    results = {p["name"]: p["result"] for p in items if p["status"] == "succeeded" and p["result"]}
    runs = [
        {
            "name": p["name"],
            "status": p["status"],
            "error": p["error"],
            "duration_seconds": p["duration_seconds"],
            "queued_to_finished_seconds": seconds_between(p["created_at"], p["finished_at"]),
            "truncated": (p["result"] or {}).get("truncated"),
        }
        for p in items
    ]
    return results, runs


def record(
    api: httpx.Client, family: str, case: str, seed: int, spec: dict, base: str, probe_budget: int | None = None
) -> dict:
    t0 = time.perf_counter()
    r = api.post("/jobs", json=spec)
    if r.status_code != 202:
        raise SystemExit(f"submit refused ({r.status_code}): {r.text}")
    job_id = r.json()["id"]
    while (job := api.get(f"/jobs/{job_id}").json())["status"] not in DONE:
        time.sleep(1)
    seconds = round(time.perf_counter() - t0, 1)
    context, rows = recorded(job_id)
    c = CASES[case]
    fx = compact(
        {
            "format": 1,
            "family": family,
            "case": case,
            "seed": seed,
            "held_out": FAMILIES[family].held_out,
            "planted": c.planted,
            "accepted": c.accepted,
            "manifested": None,
            "manifest": None,
            "job": {
                "id": job_id,
                "status": job["status"],
                "error": job["error"],
                "seconds": seconds,
                "spec": spec,
                "base_sha256": base,
                "training_seconds": seconds_between(job.get("started_at"), job.get("finished_at")),
            },
            "context": context,
            "history": rows,
        }
    )
    served = api.get(f"/jobs/{job_id}/analysis").json()
    replayed = evaluate.diagnose_fixture(fx)
    if sorted({f["cause"] for f in served["findings"]}) != sorted({f.cause for f in replayed.findings}):
        print(
            f"warning: {family}/{case}/s{seed}: the fixture's diagnosis differs from the endpoint's "
            f"({[f['cause'] for f in served['findings']]} vs {[f.cause for f in replayed.findings]})",
            flush=True,
        )
    if probe_budget is not None:  # after the context above was recorded: it stays the probe-free one
        results, runs = run_probes(api, job_id, probe_budget)
        fx.update(probes=compact(results), probe_runs=compact(runs), probe_budget_seconds=probe_budget)
        if c.data is plant.noisy:
            fx["moved"] = moved_files(WORK / "data" / spec["dataset"]["train_dir"])
    return fx


def judge_all(corpus: Path, families: list[str]) -> None:
    """(Re)judge manifestation of every fixture of these families against its family-and-seed baseline."""
    for family in families:
        folder = corpus / family
        for path in sorted(folder.glob("*.json")):
            fx = json.loads(path.read_text())
            base_path = folder / f"{BASELINE_CASE}-s{fx['seed']}.json"
            base = json.loads(base_path.read_text())["history"] if base_path.exists() else None
            n = len(fx["context"].get("class_counts_val") or {}) or len(FAMILIES[family].classes)
            ok, observed = judge(CASES[fx["case"]].check, fx["history"], base, n)
            if fx["job"]["status"] != "succeeded" and not fx["history"]:
                ok, observed = None, {"job": fx["job"]["status"], "error": fx["job"]["error"]}
            if (ok, observed) != (fx["manifested"], (fx["manifest"] or {}).get("observed")):
                fx.update(manifested=ok, manifest={"check": CASES[fx["case"]].check, "observed": observed})
                path.write_text(json.dumps(compact(fx), separators=(",", ":")) + "\n")


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    cases = [c for c in CASES if c in args.cases]  # table order: the baseline first
    return [(f, c, s) for f in args.families for s in range(args.seeds) for c in cases]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--corpus", type=Path, default=evaluate.CORPUS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "diagnosis.json")
    parser.add_argument("--probes", type=int, metavar="BUDGET", help="also run all probes on each job, BUDGET s each")
    parser.add_argument("--rerun", action="store_true", help="record runs again even when their fixture exists")
    args = parser.parse_args(argv)
    args.families, args.cases = args.families.split(","), args.cases.split(",")
    for name, given, known in (("families", args.families, FAMILIES), ("cases", args.cases, CASES)):
        if unknown := set(given) - set(known):
            parser.error(f"--{name}: unknown {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    data = WORK / "data"
    data.mkdir(parents=True, exist_ok=True)
    weights = pretrain(data / "base.weights.h5", WORK / "source")
    base = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]  # a re-trained base means new runs
    todo = []
    for family, case, seed in plan(args):
        spec = spec_for(case, data, family, seed, args.epochs)
        path = args.corpus / family / f"{case}-s{seed}.json"
        if path.exists() and not args.rerun:
            job = json.loads(path.read_text())["job"]
            if (job["spec"], job.get("base_sha256")) == (spec, base):
                continue
        todo.append((family, case, seed, spec, path))
    print(f"{len(todo)} run(s) to record", flush=True)
    if todo:
        service, url = start_embedded_service(WORK, args.port)
        try:
            with httpx.Client(base_url=url, timeout=60) as api:
                for family, case, seed, spec, path in todo:
                    fx = record(api, family, case, seed, spec, base, args.probes)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(fx, separators=(",", ":")) + "\n")
                    probed = sum(r["duration_seconds"] or 0 for r in fx.get("probe_runs", []))
                    print(
                        f"{family}/{case}/s{seed}: {fx['job']['status']} in {fx['job']['seconds']} s"
                        f" (training {fx['job']['training_seconds']} s, probes {probed:.1f} s)",
                        flush=True,
                    )
        finally:
            service.stop(timeout=120)
    judge_all(args.corpus, args.families)
    return evaluate.main(["--corpus", str(args.corpus), "--out", str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
