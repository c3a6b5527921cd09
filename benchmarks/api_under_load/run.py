"""Bounded load test of the API on loopback: many pollers, steady submissions, and a count of lost jobs.

    .venv/bin/python -m benchmarks.api_under_load.run --pollers 200 --duration 60

Starts the real API (uvicorn, `--workers` processes) on 127.0.0.1 against a fresh PostgreSQL database
and a Redis queue nobody consumes, seeds `--jobs` jobs, then for `--duration` seconds runs
`--pollers` clients that each poll `GET /jobs/{id}/metrics?after_epoch=N` and `GET /jobs/{id}` every
`--interval` seconds (0: back to back), while `--submit-rate` `POST /jobs` per second arrive on a
fixed schedule and `--epoch-rate` epoch rows per second are written as a worker would. It reports
requests, errors (any non-2xx answer or exception), p50/p95/p99 latency per endpoint and throughput,
then checks that every job answered with 202 is in the database and its message on the broker.

Everything runs on this machine and stops by itself; the database, queue and files are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import redis

from benchmarks.common import (
    PG_ADMIN,
    REDIS_URL,
    busy_processes,
    create_database,
    database_url,
    drop_database,
    drop_queue,
    load_average,
    machine,
    service_url,
    start_api,
)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
GRACE_SECONDS = 30  # after the measured window: for in-flight requests to finish before everything stops

METRICS = "GET /jobs/{id}/metrics"
DETAIL = "GET /jobs/{id}"
SUBMIT = "POST /jobs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of measured load (default 60)")
    p.add_argument("--pollers", type=int, default=200, help="concurrent polling clients (default 200)")
    p.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds each poller waits between polls, jittered ±20%%; 0 polls back to back (default 1)",
    )
    p.add_argument("--submit-rate", type=float, default=5.0, help="POST /jobs per second (default 5)")
    p.add_argument("--epoch-rate", type=float, default=2.0, help="epoch rows written per second (default 2)")
    p.add_argument("--jobs", type=int, default=20, help="jobs the pollers share (default 20)")
    p.add_argument("--workers", type=int, default=2, choices=(1, 2), help="uvicorn worker processes (default 2)")
    p.add_argument("--connections", type=int, default=200, help="the pollers' HTTP connection limit (default 200)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    p.add_argument(
        "--pg-admin",
        default=PG_ADMIN,
        help="PostgreSQL on loopback to create the scratch database with",
    )
    p.add_argument(
        "--redis",
        default=REDIS_URL,
        help="Redis on loopback; a queue named after this run is used and deleted",
    )
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    for name, url in (("--pg-admin", args.pg_admin), ("--redis", args.redis)):
        if urlsplit(url).hostname not in LOOPBACK:
            p.error(f"{name} must point at this machine (127.0.0.1), not {urlsplit(url).hostname!r}")
    if args.duration <= 0 or args.pollers < 0 or args.jobs < 1 or args.connections < 1:
        p.error("--duration and --connections must be positive, --jobs at least 1, --pollers not negative")
    return args


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    accepted: list[str] = field(default_factory=list)  # ids answered with 202
    rows_seen: int = 0  # epoch rows the pollers received

    def record(self, endpoint: str, seconds: float, outcome: str | None) -> None:
        self.latencies[endpoint].append(seconds)
        if outcome is not None:
            self.errors[endpoint][outcome] += 1


async def timed(
    stats: Stats, client: httpx.AsyncClient, endpoint: str, method: str, url: str, **kw
) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        r = await client.request(method, url, **kw)
    except Exception as exc:  # noqa: BLE001 - a timeout, a refused or reset connection: all count as errors
        stats.record(endpoint, time.perf_counter() - start, type(exc).__name__)
        return None
    stats.record(endpoint, time.perf_counter() - start, None if 200 <= r.status_code < 300 else str(r.status_code))
    return r


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


# --- the load ---------------------------------------------------------------------------------


async def poller(stats: Stats, client: httpx.AsyncClient, job_id: str, interval: float, stop: asyncio.Event) -> None:
    after = 0
    await asyncio.sleep(random.uniform(0, interval))  # spread the first polls over one interval
    while not stop.is_set():
        r = await timed(stats, client, METRICS, "GET", f"/jobs/{job_id}/metrics", params={"after_epoch": after})
        if r is not None and r.status_code == 200:
            try:
                page = r.json()
                stats.rows_seen += len(page["items"])
                after = page["next_after_epoch"] or after
            except (ValueError, KeyError, TypeError):
                stats.errors[METRICS]["bad body"] += 1
        await timed(stats, client, DETAIL, "GET", f"/jobs/{job_id}")
        if interval > 0:
            try:
                await asyncio.wait_for(stop.wait(), interval * random.uniform(0.8, 1.2))
            except TimeoutError:
                pass


def submit_spec(name: str, seed: int) -> dict:
    return {
        "name": name,
        "dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 75},
        "model": {"weights": None, "dense_units": 32},
        "batch_size": 8,
        "epochs": 3,
        "seed": seed,
    }


async def submitter(stats: Stats, client: httpx.AsyncClient, rate: float, stop: asyncio.Event) -> None:
    """Open loop: a POST every 1/rate seconds on schedule, whether or not earlier ones have answered."""
    if rate <= 0:
        return

    async def one(i: int) -> None:
        r = await timed(stats, client, SUBMIT, "POST", "/jobs", json=submit_spec(f"load-{i}", i))
        if r is not None and r.status_code == 202:
            stats.accepted.append(r.json()["id"])

    in_flight: set[asyncio.Task] = set()
    start, i = time.perf_counter(), 0
    while not stop.is_set():
        task = asyncio.create_task(one(i))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        i += 1
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    if in_flight:  # every submission that was sent gets its answer (or its timeout) before the check
        await asyncio.wait(in_flight)


def epoch_writer(job_ids: list[str], rate: float, stop_at: float) -> int:
    """What training workers do while the pollers read: one epoch row at a time, round-robin over the jobs."""
    if rate <= 0:
        return 0
    from models.db import session_scope
    from models.lifecycle import upsert_epoch

    written, next_epoch = 0, {j: 1 for j in job_ids}
    start = time.perf_counter()
    while time.perf_counter() < stop_at:
        jid = job_ids[written % len(job_ids)]
        e = next_epoch[jid]
        with session_scope() as s:
            upsert_epoch(
                s,
                uuid.UUID(jid),
                {
                    "epoch": e,
                    "loss": 1.0 / e,
                    "accuracy": 0.5,
                    "val_loss": 1.1 / e,
                    "val_accuracy": 0.5,
                    "learning_rate": 1e-3,
                    "epoch_seconds": 1.0,
                },
            )
        next_epoch[jid] = e + 1
        written += 1
        time.sleep(max(0.0, start + written / rate - time.perf_counter()))
    return written


async def drive(args: argparse.Namespace, url: str, job_ids: list[str]) -> tuple[Stats, float, int]:
    """Returns the measurements, the seconds from the first request to the last answer, and the epoch rows written."""
    stats = Stats()
    stop = asyncio.Event()
    timeout = httpx.Timeout(args.timeout, pool=args.timeout)
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as polling,
        httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=50)) as submitting,
    ):
        started = time.perf_counter()
        writer = asyncio.create_task(asyncio.to_thread(epoch_writer, job_ids, args.epoch_rate, started + args.duration))
        tasks = [
            asyncio.create_task(poller(stats, polling, job_ids[i % len(job_ids)], args.interval, stop))
            for i in range(args.pollers)
        ]
        tasks.append(asyncio.create_task(submitter(stats, submitting, args.submit_rate, stop)))
        await asyncio.sleep(args.duration)
        stop.set()
        # No poll cycle or submission starts after the window; requests in flight are waited for, up to a bound.
        _, pending = await asyncio.wait(tasks, timeout=GRACE_SECONDS)
        elapsed = time.perf_counter() - started
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        written = await asyncio.wait_for(writer, GRACE_SECONDS)
        if pending:
            print(f"warning: {len(pending)} clients had not finished {GRACE_SECONDS} s after the window; cancelled")
    return stats, elapsed, written


# --- the service under test -------------------------------------------------------------------


def run_loop(coro):
    try:
        import uvloop  # installed with uvicorn[standard]; the client spends less CPU on it
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def report(args: argparse.Namespace, stats: Stats, elapsed: float, written: int, check: dict) -> dict:
    endpoints = {}
    total = errors = 0
    for name in (METRICS, DETAIL, SUBMIT):
        lat = sorted(stats.latencies.get(name, []))
        errs = dict(stats.errors.get(name, {}))
        n, e = len(lat), sum(errs.values())
        total, errors = total + n, errors + e
        endpoints[name] = {
            "requests": n,
            "errors": e,
            "error_kinds": errs,
            "per_second": round(n / elapsed, 1),
            **{f"p{q}_ms": round(percentile(lat, q) * 1000, 1) for q in (50, 95, 99)},
            "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        }
    return {
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("pg_admin", "redis")
        },
        "machine": {**machine(), "loadavg_at_end": load_average()},
        "busy_processes_at_end": busy_processes(),
        "seconds": round(elapsed, 1),
        "requests": total,
        "errors": errors,
        "throughput_per_second": round(total / elapsed, 1),
        "epoch_rows_written": written,
        "epoch_rows_received_by_pollers": stats.rows_seen,
        "endpoints": endpoints,
        "submissions": check,
    }


def print_report(r: dict) -> None:
    c = r["config"]
    print(
        f"\n{c['pollers']} pollers (interval {c['interval']} s), {c['submit_rate']} submissions/s, "
        f"{c['workers']} API workers, {r['seconds']} s on {r['machine']['cpus']} CPUs"
    )
    print(
        f"{'endpoint':<24}{'requests':>9}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    for name, e in r["endpoints"].items():
        print(
            f"{name:<24}{e['requests']:>9}{e['errors']:>8}{e['per_second']:>8}{e['p50_ms']:>9}{e['p95_ms']:>9}"
            f"{e['p99_ms']:>9}{e['max_ms'] if e['max_ms'] is not None else '-':>9}"
        )
        if e["error_kinds"]:
            print(f"{'':<24}errors: {e['error_kinds']}")
    print(f"{'all':<24}{r['requests']:>9}{r['errors']:>8}{r['throughput_per_second']:>8}")
    print(f"epoch rows written: {r['epoch_rows_written']}; received by pollers: {r['epoch_rows_received_by_pollers']}")
    s = r["submissions"]
    print(
        f"accepted (202): {s['accepted']}; in the database: {s['in_database']}; lost: {s['lost']}; "
        f"enqueued: {s['enqueued']}; messages on the broker: {s['broker_messages']} "
        f"(for {s['jobs_in_database']} jobs in the database)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:10]
    db_name = f"plateau_load_{run_id}"
    queue = f"load-{run_id}"
    work = Path(tempfile.mkdtemp(prefix="plateau-load-"))
    env = {
        "PLATEAU_DATABASE_URL": service_url(database_url(db_name, args.pg_admin)),
        "PLATEAU_BROKER_URL": args.redis,
        "PLATEAU_QUEUE": queue,  # no worker consumes it
        "PLATEAU_DATA_ROOT": str(work / "data"),
        "PLATEAU_ARTIFACTS_DIR": str(work / "artifacts"),
        "PLATEAU_MAX_ACTIVE_JOBS_PER_TENANT": "1000000",  # submissions pile up as queued jobs; the quota is not under test
    }
    os.environ.update(env)
    from samples.shapes import generate

    generate(work / "data" / "shapes", classes=3, train=4, val=2, size=75, seed=1)
    create_database(db_name, args.pg_admin)
    proc = None
    try:
        proc, url = start_api(env, work / "api.log", workers=args.workers, path="/readyz", timeout=120)
        with httpx.Client(base_url=url, timeout=30) as c:
            job_ids = []
            for i in range(args.jobs):
                r = c.post("/jobs", json=submit_spec(f"polled-{i}", i))
                r.raise_for_status()
                job_ids.append(r.json()["id"])
        print(
            f"API on {url} ({args.workers} workers), {len(job_ids)} jobs seeded; "
            f"{args.pollers} pollers for {args.duration:.0f} s …",
            flush=True,
        )
        stats, elapsed, written = run_loop(drive(args, url, job_ids))
        check = verify(args, stats.accepted, db_name, queue)
        result = report(args, stats, elapsed, written, check)
        print_report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 1 if check["lost"] else 0
    finally:
        if proc is not None:
            proc.stop()
        from models.db import get_engine

        get_engine().dispose()
        drop_queue(queue, args.redis)
        drop_database(db_name, args.pg_admin)
        shutil.rmtree(work, ignore_errors=True)


def verify(args: argparse.Namespace, accepted: list[str], db_name: str, queue: str) -> dict:
    """Every job that got a 202 is a row in the database, and has been sent to the broker."""
    with psycopg.connect(database_url(db_name, args.pg_admin)) as conn:
        found = conn.execute(
            "SELECT count(*), count(enqueued_at) FROM jobs WHERE id = ANY(%s)", ([uuid.UUID(j) for j in accepted],)
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    messages = redis.Redis.from_url(args.redis).llen(queue)
    return {
        "accepted": len(accepted),
        "distinct": len(set(accepted)),
        "in_database": found[0],
        "lost": len(set(accepted)) - found[0],
        "enqueued": found[1],
        "jobs_in_database": total,
        "broker_messages": messages,
    }


if __name__ == "__main__":
    raise SystemExit(main())
