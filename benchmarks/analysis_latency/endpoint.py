"""`GET /jobs/{id}/analysis` on a stored 10,000-epoch job: the latency a client sees, database read included.

The job lives in a fresh PostgreSQL database; requests go through the whole FastAPI app in-process
(FastAPI's TestClient: no network, no uvicorn). Two cases:

- cold: the API process has nothing of this job (its first request): read every row, validate it into an
  `EpochRecord`, diagnose;
- after a new epoch: one more epoch row was written since the last request (timed: the request only), so
  the process reads that row, appends it to its cached history and diagnoses again;
- warm: the same request again while nothing changed, answered from the per-process diagnosis cache
  after checking the job's metrics version, learning-rate cuts and status.
"""

from __future__ import annotations

import os
import time
import uuid

from benchmarks.common import create_database, drop_database, service_url, summary, timed


def measure(raw_rows: list[dict], spec: dict, runs: int) -> dict:
    name = f"plateau_bench_analysis_{uuid.uuid4().hex[:8]}"
    os.environ["PLATEAU_DATABASE_URL"] = service_url(create_database(name))
    os.environ.setdefault("PLATEAU_AUTH_ENABLED", "false")
    try:
        return _measure(raw_rows, spec, runs)
    finally:
        from models.db import get_engine

        get_engine().dispose()
        drop_database(name)


def _measure(raw_rows: list[dict], spec: dict, runs: int) -> dict:
    from fastapi.testclient import TestClient
    from sqlalchemy import insert, update

    from api.main import app
    from models.analysis import service
    from models.db import session_scope
    from models.lifecycle import upsert_epoch
    from models.tables import EpochMetric, Job, utcnow

    with TestClient(app) as client:  # runs the app's start-up: migrations
        with session_scope() as s:
            job = Job(spec=spec, spec_hash="0" * 64, status="succeeded")
            s.add(job)
            s.commit()
            columns = set(EpochMetric.model_fields) - {"id", "job_id", "recorded_at"}
            now = utcnow()
            s.execute(
                insert(EpochMetric),
                [
                    {"job_id": job.id, "recorded_at": now, **{k: v for k, v in r.items() if k in columns}}
                    for r in raw_rows
                ],
            )
            s.execute(update(Job).where(Job.id == job.id).values(metrics_version=len(raw_rows)))
            s.commit()
        url = f"/jobs/{job.id}/analysis"
        body = client.get(url).json()
        assert body["epochs_analysed"] == len(raw_rows), body.get("epochs_analysed")

        def cold() -> None:
            service.clear_cache()
            assert client.get(url).status_code == 200

        def warm() -> None:
            assert client.get(url).status_code == 200

        cold_ms = summary(timed(cold, max(5, runs // 3)))
        warm_ms = summary(timed(warm, runs))
        new_epoch = []
        next_epoch = len(raw_rows) + 1
        for i in range(runs + 1):
            with session_scope() as s:
                upsert_epoch(s, job.id, {**raw_rows[-1], "epoch": next_epoch + i})
            start = time.perf_counter()
            assert client.get(url).status_code == 200
            if i:  # the first one warms up
                new_epoch.append((time.perf_counter() - start) * 1000)
        new_epoch_ms = summary(new_epoch)
        t0 = time.perf_counter()
        with session_scope() as s:
            records = service.history(s, s.get(Job, job.id))
        history_ms = (time.perf_counter() - t0) * 1000
    return {
        "cold": cold_ms,
        "warm": warm_ms,
        "after_new_epoch": new_epoch_ms,
        "read_and_validate_rows_ms": round(history_ms, 1),
        "verdict": body["verdict"],
        "findings": sorted({f["cause"] for f in body["findings"]}),
        "epochs_analysed": len(records),
    }
