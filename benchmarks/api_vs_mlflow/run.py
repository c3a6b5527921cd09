"""Plateau's API against an MLflow tracking server, side by side, on the same machine and database server.

    # once: MLflow in its own virtual environment (it is not a Plateau dependency)
    python3 -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow "psycopg[binary]"

    .venv/bin/python -m benchmarks.api_vs_mlflow.run [--workers 2] [--seconds 5 --rounds 2] [--concurrency 1,10,50]

What is compared (closed loop: each of N clients sends its next request when the last one answered):

- read a history: Plateau `GET /jobs/{id}/metrics?limit=1000` on a job with 1,000 epoch rows, every
  signal recorded (inserted with `models.lifecycle.upsert_epoch`), against MLflow
  `GET /api/2.0/mlflow/metrics/get-history?run_id=…&metric_key=val_loss` on a run with one metric of
  1,000 steps (logged with `runs/log-batch`);
  Plateau keeps serialized pages per process and revalidates them against the job's metrics version,
  so a repeated read of an unchanged history is served from memory: the steady state of pollers;
- read a history, page cache off: the same reads from a second Plateau server started with
  `PLATEAU_METRICS_PAGE_CACHE_MB=0`, so every read queries and serializes (a first read, or a read right
  after each new epoch), against the same MLflow reads;
- create: Plateau `POST /jobs` with a valid spec whose folders exist under a generated image set,
  against MLflow `POST /api/2.0/mlflow/runs/create`.

Both servers run under uvicorn with the same number of worker processes (`--workers`), on
127.0.0.1, each against its own fresh database on the same PostgreSQL server (default
`postgresql://postgres@127.0.0.1:5432`). Plateau enqueues each submitted job on Redis, on a queue
name unique to this run that no worker consumes; the per-tenant quota is raised for the run, and
after each Plateau POST window the queued jobs are marked cancelled in the database so the
tenant's active-job count (counted on every submit) stays small, as with workers draining the queue. Authentication is off on both (MLflow's default server has none).
MLflow's job-execution runner (GenAI background jobs) is turned off so that both sides run the
same number of processes. A cell (endpoint × concurrency) alternates the two servers for `--rounds`
windows each (Plateau, MLflow, Plateau, MLflow, …), so a change in background load hits both;
a window is `--warmup` seconds unmeasured, then `--seconds` measured, and the requests completed
inside the measured windows count (throughput = their number / measured seconds; latencies
pooled). Server CPU per request is read from /proc for each server's process group (the client's
own CPU too). Results: `benchmarks/results/api_vs_mlflow.json`.
Target: Plateau ≥ 2× MLflow's requests/s with a p99 no higher than MLflow's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from benchmarks.api_vs_mlflow.load import Request, merge, run_cell
from benchmarks.common import (
    REDIS_URL,
    ROOT,
    Proc,
    busy_processes,
    create_database,
    drop_database,
    drop_queue,
    free_port,
    http_ok,
    load_average,
    machine,
    service_url,
    start_api,
    wait_for,
)

RESULTS = ROOT / "benchmarks" / "results" / "api_vs_mlflow.json"
MLFLOW = os.environ.get("PLATEAU_BENCH_MLFLOW", "/tmp/mlflow-venv/bin/mlflow")
SPEC = {
    "name": "bench",
    "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 75, "seed": 1},
    "model": {"weights": None, "trainable": "head", "dense_units": 64},
    "regularization": {"dropout": 0.2},
    "optimizer": {"name": "adam", "learning_rate": 0.001},
    "batch_size": 16,
    "epochs": 5,
    "seed": 1,
}
TARGET_RATIO = 2.0


def start_plateau(env: dict[str, str], workers: int, log: Path) -> tuple[Proc, str]:
    return start_api(env, log, workers=workers, path="/readyz", timeout=120)


def start_mlflow(db_url: str, artifacts: Path, workers: int, log: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        [
            MLFLOW,
            "server",
            "--backend-store-uri",
            db_url,
            "--default-artifact-root",
            artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(url + "/health") or not proc.alive(), 240, lambda: f"MLflow did not start:\n{proc.tail()}")
    assert proc.alive(), proc.tail()
    return proc, url


def seed_plateau(url: str, db_url: str, epochs: int) -> str:
    from sqlmodel import Session

    from benchmarks.analysis_latency.run import rows
    from models.db import make_engine
    from models.lifecycle import upsert_epoch

    resp = httpx.post(url + "/jobs", json=SPEC, timeout=30)
    assert resp.status_code == 202, resp.text
    job_id = uuid.UUID(resp.json()["id"])
    engine = make_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with Session(engine) as session:
        for row in rows(epochs, "stagnating", seed=3):
            upsert_epoch(session, job_id, row)
    engine.dispose()
    page = httpx.get(f"{url}/jobs/{job_id}/metrics", params={"limit": epochs}, timeout=30).json()
    assert len(page["items"]) == epochs and page["next_after_epoch"] == epochs, len(page["items"])
    return str(job_id)


def seed_mlflow(url: str, steps: int) -> tuple[str, str]:
    api = url + "/api/2.0/mlflow"
    exp = httpx.post(api + "/experiments/create", json={"name": f"bench-{uuid.uuid4().hex[:8]}"}, timeout=30)
    exp.raise_for_status()
    experiment_id = exp.json()["experiment_id"]
    run = httpx.post(
        api + "/runs/create",
        json={"experiment_id": experiment_id, "start_time": int(time.time() * 1000), "run_name": "history"},
        timeout=30,
    )
    run.raise_for_status()
    run_id = run.json()["run"]["info"]["run_id"]
    rng = random.Random(3)
    now = int(time.time() * 1000)
    metrics = [
        {"key": "val_loss", "value": 1.0 / (1 + i) + rng.gauss(0, 0.01), "timestamp": now + i, "step": i + 1}
        for i in range(steps)
    ]
    for start in range(0, steps, 1000):  # log-batch takes at most 1,000 metrics per call
        httpx.post(
            api + "/runs/log-batch", json={"run_id": run_id, "metrics": metrics[start : start + 1000]}, timeout=60
        ).raise_for_status()
    hist = httpx.get(api + "/metrics/get-history", params={"run_id": run_id, "metric_key": "val_loss"}, timeout=30)
    hist.raise_for_status()
    assert len(hist.json()["metrics"]) == steps, len(hist.json()["metrics"])
    return experiment_id, run_id


def drain_plateau_queue(db_url: str, keep: str, queue: str) -> int:
    """Queued jobs from a POST cell → cancelled, as if workers had taken them; the broker queue is emptied."""
    import redis

    with psycopg.connect(db_url, autocommit=True) as conn:
        n = conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued' AND id <> %s", (keep,)
        ).rowcount
        conn.execute("VACUUM ANALYZE jobs")
    redis.Redis.from_url(REDIS_URL).delete(queue)
    return n


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(*, pgid: int | None = None, cmdline_has: str | None = None) -> dict[int, float]:
    """user+system CPU seconds per process, for the processes in a process group or whose command line
    contains a string (PostgreSQL backends show their database name there), read from /proc."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if pgid is not None and int(fields[2]) != pgid:
                continue
            if cmdline_has is not None:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    if cmdline_has.encode() not in fh.read():
                        continue
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
    return out


class CpuMeter:
    """CPU seconds used by one server's processes, its database backends and this client, summed over windows.

    Per process: CPU at the end of a window minus CPU at its start (0 for a process born inside it).
    A process that exits inside a window (a database connection closed by the pool) is not counted,
    so the database figure is a lower bound; the servers' processes live through the whole run.
    """

    def __init__(self, pgid: int, database: str):
        self.pgid, self.database = pgid, database
        self.start: tuple[dict, dict, float] | None = None
        self.used = [0.0, 0.0, 0.0]

    def _now(self) -> tuple[dict, dict, float]:
        return cpu_seconds(pgid=self.pgid), cpu_seconds(cmdline_has=self.database), time.process_time()

    def __call__(self, edge: str) -> None:
        if edge == "start":
            self.start = self._now()
            return
        end = self._now()
        for i in (0, 1):
            self.used[i] += sum(v - self.start[i].get(pid, 0.0) for pid, v in end[i].items())
        self.used[2] += end[2] - self.start[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="server processes, the same for both")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per window")
    parser.add_argument(
        "--rounds", type=int, default=2, help="windows per server and cell, alternating Plateau and MLflow"
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated subset of: metrics,metrics_uncached,create")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="leave the servers and databases (prints their URLs)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    kinds = [k for k in ("metrics", "metrics_uncached", "create") if not args.only or k in args.only.split(",")]

    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="plateau-bench-api-"))
    plateau_db, mlflow_db = f"plateau_bench_{run_id}", f"mlflow_bench_{run_id}"
    queue = f"bench-api-{run_id}"
    procs: list[Proc] = []
    try:
        from samples.shapes import generate

        generate(work / "data" / "shapes", classes=3, train=8, val=4, size=80, seed=1)
        plateau_url_db = create_database(plateau_db)
        mlflow_url_db = create_database(mlflow_db)
        env = {
            "PLATEAU_DATABASE_URL": service_url(plateau_url_db),
            "PLATEAU_BROKER_URL": REDIS_URL,
            "PLATEAU_QUEUE": queue,
            "PLATEAU_DATA_ROOT": str(work / "data"),
            "PLATEAU_ARTIFACTS_DIR": str(work / "artifacts"),
            "PLATEAU_AUTH_ENABLED": "false",
            "PLATEAU_MAX_ACTIVE_JOBS_PER_TENANT": "1000000",
        }
        plateau, p_url = start_plateau(env, args.workers, work / "plateau.log")
        procs.append(plateau)
        # the same service with its metrics page cache off: every read goes to the database and serializes
        uncached, u_url = start_plateau(
            {**env, "PLATEAU_METRICS_PAGE_CACHE_MB": "0"}, args.workers, work / "plateau-uncached.log"
        )
        procs.append(uncached)
        mlflow, m_url = start_mlflow(mlflow_url_db, work / "mlartifacts", args.workers, work / "mlflow.log")
        procs.append(mlflow)
        job_id = seed_plateau(p_url, plateau_url_db, args.epochs)
        experiment_id, run_id_ml = seed_mlflow(m_url, args.epochs)
        print(f"Plateau {p_url} job {job_id}; MLflow {m_url} run {run_id_ml}; work dir {work}", flush=True)

        spec_body = json.dumps(SPEC).encode()
        json_headers = {"content-type": "application/json"}
        cells = {
            ("metrics", "plateau"): (
                lambda i: Request("GET", f"{p_url}/jobs/{job_id}/metrics?limit={args.epochs}"),
                lambda status: status == 200,
            ),
            ("metrics", "mlflow"): (
                lambda i: Request(
                    "GET", f"{m_url}/api/2.0/mlflow/metrics/get-history?run_id={run_id_ml}&metric_key=val_loss"
                ),
                lambda status: status == 200,
            ),
            ("metrics_uncached", "plateau"): (
                lambda i: Request("GET", f"{u_url}/jobs/{job_id}/metrics?limit={args.epochs}"),
                lambda status: status == 200,
            ),
            ("create", "plateau"): (
                lambda i: Request("POST", f"{p_url}/jobs", body=spec_body, headers=json_headers),
                lambda status: status == 202,
            ),
            ("create", "mlflow"): (
                lambda i: Request(
                    "POST",
                    f"{m_url}/api/2.0/mlflow/runs/create",
                    headers=json_headers,
                    body=json.dumps(
                        {"experiment_id": experiment_id, "run_name": f"r{i}", "start_time": int(time.time() * 1000)}
                    ).encode(),
                ),
                lambda status: status == 200,
            ),
        }
        cells[("metrics_uncached", "mlflow")] = cells[("metrics", "mlflow")]
        groups = {"plateau": (plateau.p.pid, plateau_db), "mlflow": (mlflow.p.pid, mlflow_db)}

        def group(kind: str, server: str) -> tuple[int, str]:
            return (uncached.p.pid, plateau_db) if (kind, server) == ("metrics_uncached", "plateau") else groups[server]

        busy = busy_processes()
        load_before = load_average()
        results = []
        for c in levels:
            for kind in kinds:
                windows: dict[str, list] = {"plateau": [], "mlflow": []}
                meters = {server: CpuMeter(*group(kind, server)) for server in windows}
                # Alternate the two servers window by window, so a change in background load hits both.
                for _ in range(args.rounds):
                    for server in ("plateau", "mlflow"):
                        make, ok = cells[(kind, server)]
                        windows[server].append(
                            run_cell(
                                f"{server}:{kind}",
                                make,
                                ok,
                                concurrency=c,
                                seconds=args.seconds,
                                warmup=args.warmup,
                                on_window=meters[server],
                            )
                        )
                        if kind == "create" and server == "plateau":
                            drain_plateau_queue(plateau_url_db, job_id, queue)
                for server in ("plateau", "mlflow"):
                    cell = merge(windows[server])
                    s = {
                        "server": server,
                        "endpoint": kind,
                        **cell.summary(),
                        "windows_rps": [w.summary()["rps"] for w in windows[server]],
                    }
                    n = max(1, cell.requests)
                    used = meters[server].used
                    s["cpu_ms_per_request"] = {
                        "server": round(used[0] * 1000 / n, 2),
                        "database_lower_bound": round(used[1] * 1000 / n, 2),
                        "client": round(used[2] * 1000 / n, 2),
                    }
                    results.append(s)
                    print(
                        f"{server:8s} {kind:8s} c={c:3d}  {s['rps']:9.1f} req/s  p50 {s['p50_ms']} ms  "
                        f"p99 {s['p99_ms']} ms  errors {s['errors']}  {s['mean_response_bytes']} B  "
                        f"cpu ms/req {s['cpu_ms_per_request']}  windows {s['windows_rps']}",
                        flush=True,
                    )
        comparisons = []
        for c in levels:
            for kind in kinds:
                p = next(
                    r for r in results if r["server"] == "plateau" and r["endpoint"] == kind and r["concurrency"] == c
                )
                m = next(
                    r for r in results if r["server"] == "mlflow" and r["endpoint"] == kind and r["concurrency"] == c
                )
                ratio = p["rps"] / m["rps"] if m["rps"] else float("inf")
                p99_ok = p["p99_ms"] is not None and m["p99_ms"] is not None and p["p99_ms"] <= m["p99_ms"]
                comparisons.append(
                    {
                        "endpoint": kind,
                        "concurrency": c,
                        "throughput_ratio": round(ratio, 2),
                        "plateau_p99_ms": p["p99_ms"],
                        "mlflow_p99_ms": m["p99_ms"],
                        "p99_ratio": round(p["p99_ms"] / m["p99_ms"], 2) if m["p99_ms"] else None,
                        "meets_target": ratio >= TARGET_RATIO and p99_ok,
                    }
                )
        out = {
            "benchmark": "api_vs_mlflow",
            "command": " ".join(["python -m benchmarks.api_vs_mlflow.run", *sys.argv[1:]]),
            "workers": args.workers,
            "seconds_per_window": args.seconds,
            "rounds": args.rounds,
            "warmup_per_window": args.warmup,
            "epochs": args.epochs,
            "backend": "PostgreSQL (one server, a fresh database each)",
            "mlflow_version": subprocess.run([MLFLOW, "--version"], capture_output=True, text=True).stdout.strip(),
            "machine": {**machine(), "loadavg_before": load_before},
            "busy_processes_before": busy,
            "target": f"Plateau >= {TARGET_RATIO}x MLflow requests/s at equal or lower p99",
            "results": results,
            "comparisons": comparisons,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
        for comp in comparisons:
            print(
                f"{comp['endpoint']:8s} c={comp['concurrency']:3d}  Plateau/MLflow throughput "
                f"{comp['throughput_ratio']:.2f}x  p99 {comp['plateau_p99_ms']} vs {comp['mlflow_p99_ms']} ms  "
                f"{'MET' if comp['meets_target'] else 'not met'}"
            )
        if args.keep:
            print("--keep: servers left running; press Ctrl-C to stop them")
            while True:
                time.sleep(3600)
    finally:
        for proc in procs:
            proc.stop()
        try:
            drop_queue(queue)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
        drop_database(plateau_db)
        drop_database(mlflow_db)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
