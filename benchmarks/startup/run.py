"""Job start latency: from `POST /jobs` to the first training batch, split into phases.

    .venv/bin/python -m benchmarks.startup.run [--jobs 3]

Starts the API (uvicorn, `devtools/service.py:start_api`) and one real Celery worker (solo pool) against
a fresh PostgreSQL database and Redis, on a queue name unique to the run, then submits jobs one at
a time (epochs 1, image_size 75, weights null, trainable head, 3 generated classes) and waits
for each to finish before sending the next. The worker is `tests/procs.py:start_worker`'s command
with `-A benchmarks.startup.instrumented` in place of `-A worker.celery_app`: the same app, task
and options, plus wall-clock marks around the training code's phases (see that module).

Phases of one job (all wall clock on one machine):
  submit        client sends POST → the job row's created_at (API timestamp)
  queue         created_at → started_at (the worker's claim; API timestamp)
  claim→train   started_at → the training function is entered (lease, artifacts dir, heartbeat)
  tf import     `import keras` (TensorFlow): only the first job of a worker process pays it
  data          folder scans (every file opened and checked) + tf.data pipelines built + the
                evaluation probe's fixed batch pulled through its pipeline
  model build   build_model (Inception-V3 + head) + compile (+ the extractor/head split)
  feature cache only when the base is frozen and there is no augmentation (the worker then trains
                the head on features computed once): random base weights saved for resumption +
                every image read, decoded and passed through the base once
  first batch   keras fit() called → the first training batch has run (tf.function tracing included)
  other         the rest inside the training function: device setup, seeding, class counts and
                events written, pre-training checks, callbacks set up
The first job after the worker starts ("cold") is reported apart; the medians are over the
following `--jobs` jobs ("warm", the steady state of a long-lived worker).
Results: benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks.common import (
    REDIS_URL,
    ROOT,
    Proc,
    busy_processes,
    create_database,
    drop_database,
    drop_queue,
    load_average,
    machine,
    service_url,
    start_api,
    wait_for,
)
from contract.status import TERMINAL_STATUSES

RESULTS = ROOT / "benchmarks" / "results" / "startup.json"
SPEC = {
    "name": "startup-bench",
    "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 75, "seed": 1},
    "model": {"weights": None, "trainable": "head", "dense_units": 64},
    "optimizer": {"name": "adam", "learning_rate": 0.001},
    "batch_size": 16,
    "epochs": 1,
    "seed": 1,
}


def start_instrumented_worker(env: dict[str, str], log: Path) -> Proc:
    """The tests' worker command (tests/procs.py:start_worker), with the instrumented app module."""
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "benchmarks.startup.instrumented",
        "worker",
        "-P",
        "solo",
        "-c",
        "1",
        "-Q",
        env["PLATEAU_QUEUE"],
        "-n",
        "bench@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    proc = Proc(args, env, log)
    wait_for(
        lambda: "ready." in proc.tail(100_000) or not proc.alive(), 120, lambda: f"worker did not start:\n{proc.tail()}"
    )
    assert proc.alive(), proc.tail()
    return proc


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def phases(t_post: float, job: dict, m: dict[str, float], d: dict[str, float]) -> dict[str, float]:
    created, started = ts(job["created_at"]), ts(job["started_at"])
    g = lambda *names: sum(d.get(n, 0.0) for n in names)  # noqa: E731
    out = {
        "submit": created - t_post,
        "queue": started - created,
        "claim_to_train": m["train_enter"] - started,
        "tf_import": m["keras_imported"] - m["train_enter"],
        "data": g("scan", "make_dataset", "feature_dataset", "probe"),
        "model_build": g("build_model", "split_model", "compile"),
        "feature_cache": g("pin_base", "extract"),
        "first_batch": m["first_batch_end"] - m["fit_called"],
    }
    in_train = m["first_batch_end"] - m["keras_imported"]
    out["other"] = in_train - sum(out[k] for k in ("data", "model_build", "feature_cache", "first_batch"))
    out["total"] = m["first_batch_end"] - t_post
    # the parts
    out.update(
        {
            "data_scan": g("scan"),
            "data_pipelines": g("make_dataset", "feature_dataset"),
            "data_probe": g("probe"),
            "model_build_only": g("build_model"),
            "model_compile": g("compile"),
            "model_split": g("split_model"),
            "feature_pin_base": g("pin_base"),
            "feature_extract": g("extract"),
            "first_step_only": m["first_batch_end"] - m["first_batch_begin"],
        }
    )
    return {k: round(v, 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3, help="warm jobs after the first (cold) one")
    parser.add_argument("--train", type=int, default=16, help="training images per class")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    db = f"plateau_bench_startup_{run_id}"
    work = Path(tempfile.mkdtemp(prefix="plateau-bench-startup-"))
    marks_file = work / "marks.jsonl"
    queue = f"bench-startup-{run_id}"
    procs: list[Proc] = []
    db_url = create_database(db)
    try:
        from samples.shapes import generate

        generate(work / "data" / "shapes", classes=3, train=args.train, val=max(4, args.train // 4), size=80, seed=1)
        env = {
            "PLATEAU_DATABASE_URL": service_url(db_url),
            "PLATEAU_BROKER_URL": REDIS_URL,
            "PLATEAU_QUEUE": queue,
            "PLATEAU_DATA_ROOT": str(work / "data"),
            "PLATEAU_ARTIFACTS_DIR": str(work / "artifacts"),
            "PLATEAU_BENCH_MARKS": str(marks_file),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        api, url = start_api(env, work / "api.log")
        procs.append(api)
        t_worker = time.time()
        worker = start_instrumented_worker(env, work / "worker.log")
        procs.append(worker)
        worker_ready_s = time.time() - t_worker
        print(f"API {url}; worker ready after {worker_ready_s:.1f} s; work dir {work}", flush=True)

        jobs = []
        for i in range(args.jobs + 1):
            t_post = time.time()
            resp = httpx.post(url + "/jobs", json={**SPEC, "name": f"startup-{i}"}, timeout=30)
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["id"]
            job = wait_for(
                lambda: (lambda j: j if j["status"] in TERMINAL_STATUSES else None)(
                    httpx.get(f"{url}/jobs/{job_id}", timeout=10).json()
                ),
                900,
                lambda: f"job {job_id} did not finish:\n{worker.tail()}",
                interval=0.2,
            )
            assert job["status"] == "succeeded", (job["status"], job.get("error"), worker.tail())
            lines = [json.loads(x) for x in marks_file.read_text().splitlines()]
            record = next(x for x in lines if x["job_id"] == job_id)
            marks, durations = record["marks"], record["durations"]
            p = phases(t_post, job, marks, durations)
            perf = next((e for e in job.get("events", []) if e["kind"] == "performance"), None)
            jobs.append(
                {
                    "job_id": job_id,
                    "cold": i == 0,
                    "phases_s": p,
                    "marks": marks,
                    "durations": durations,
                    "performance_event": perf and perf.get("reason"),
                    "created_at": job["created_at"],
                    "started_at": job["started_at"],
                    "t_post": t_post,
                }
            )
            print(
                f"job {i} ({'cold' if i == 0 else 'warm'}): " + "  ".join(f"{k} {v:.3f}" for k, v in p.items()),
                flush=True,
            )

        warm = [j["phases_s"] for j in jobs if not j["cold"]]
        medians = {k: round(statistics.median(p[k] for p in warm), 3) for k in warm[0]} if warm else {}
        out = {
            "benchmark": "startup",
            "command": " ".join(["python -m benchmarks.startup.run", *sys.argv[1:]]),
            "spec": SPEC,
            "images": {
                "classes": 3,
                "train_per_class": args.train,
                "val_per_class": max(4, args.train // 4),
                "size": 80,
            },
            "worker": "celery solo pool, 1 process (tests/procs.py:start_worker's options), PostgreSQL + Redis",
            "worker_ready_s": round(worker_ready_s, 2),
            "cold": jobs[0]["phases_s"],
            "warm_median": medians,
            "warm_jobs": len(warm),
            "jobs": jobs,
            "machine": {**machine(), "loadavg_at_end": load_average()},
            "busy_processes_at_end": busy_processes(),
            "note": args.note,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print("warm median: " + "  ".join(f"{k} {v:.3f}" for k, v in medians.items()))
        print(f"wrote {args.out}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        try:
            drop_queue(queue)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
        drop_database(db)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
