"""GET /metrics (parsed as Prometheus reads it), per-request JSON logs and job_id binding in the worker."""

from __future__ import annotations

import json
import uuid

import httpx
import structlog
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api.observability.middleware import job_id_of
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.settings import Settings, get_settings
from models.tables import Job
from tests.procs import start_api, wait_for
from tests.specs import small_spec


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def submit(client) -> str:
    r = client.post("/jobs", json=small_spec())
    assert r.status_code == 202, r.text
    return r.json()["id"]


def set_status(job_id: str, status: str) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(status=status))
        s.commit()


def test_metrics_follow_jobs_epochs_queue_and_throughput(client):
    queue = get_settings().queue
    before = scrape(client)
    assert value(before, "plateau_metrics_source_up", source="database") == 1
    assert value(before, "plateau_metrics_source_up", source="broker") == 1

    first, second = submit(client), submit(client)
    after_submit = scrape(client)
    assert value(after_submit, "plateau_jobs", state="queued") == value(before, "plateau_jobs", state="queued") + 2
    # each submit is one transition into queued, counted from the lifecycle's state events
    moved = value(after_submit, "plateau_job_transitions_total", state="queued")
    assert moved == value(before, "plateau_job_transitions_total", state="queued") + 2
    depth = value(before, "plateau_queue_depth", queue=queue)
    assert value(after_submit, "plateau_queue_depth", queue=queue) == depth + 2

    set_status(first, "running")
    with session_scope() as s:
        upsert_epoch(s, uuid.UUID(first), {"epoch": 1, "loss": 1.0, "images_per_second": 80.0})
        upsert_epoch(s, uuid.UUID(first), {"epoch": 2, "loss": 0.9, "images_per_second": 123.5})
        upsert_epoch(s, uuid.UUID(second), {"epoch": 1, "loss": 1.0, "images_per_second": 50.0})
    try:
        now = scrape(client)
        assert value(now, "plateau_jobs", state="running") == value(before, "plateau_jobs", state="running") + 1
        assert value(now, "plateau_jobs", state="queued") == value(before, "plateau_jobs", state="queued") + 1
        assert value(now, "plateau_epochs_recorded") == value(before, "plateau_epochs_recorded") + 3
        # the latest epoch of each running job only; the queued job has no throughput series
        assert value(now, "plateau_training_images_per_second", job_id=first) == 123.5
        assert ("plateau_training_images_per_second", frozenset({("job_id", second)})) not in now
        # every state is reported, even at zero
        assert {dict(k[1])["state"] for k in now if k[0] == "plateau_jobs"} == {
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
        }
    finally:
        set_status(first, "cancelled")
        set_status(second, "cancelled")
    assert ("plateau_training_images_per_second", frozenset({("job_id", first)})) not in scrape(client)


def test_request_latency_is_labelled_by_route_template(client):
    job_id = submit(client)
    route = "/jobs/{job_id}"
    before = value(
        scrape(client), "plateau_http_request_duration_seconds_count", method="GET", route=route, status="200"
    )
    assert client.get(f"/jobs/{job_id}").status_code == 200
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert client.get("/no/such/path/" + uuid.uuid4().hex).status_code == 404
    now = scrape(client)
    count = "plateau_http_request_duration_seconds_count"
    assert value(now, count, method="GET", route=route, status="200") == before + 1
    assert value(now, "plateau_http_request_duration_seconds_count", method="GET", route=route, status="404") >= 1
    assert value(now, "plateau_http_request_duration_seconds_count", method="GET", route="unmatched", status="404") >= 1
    assert (
        value(now, "plateau_http_request_duration_seconds_bucket", method="GET", route=route, status="200", le="+Inf")
        == before + 1
    )
    # no series carries a concrete id: the label is the template
    assert not any(job_id in v for k in now for _, v in k[1])


def test_metrics_token_when_configured(client):
    settings = Settings(metrics_token="scrape-secret")
    client.app.dependency_overrides[get_settings] = lambda: settings
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        scrape(client, Authorization="Bearer scrape-secret")
    finally:
        client.app.dependency_overrides.clear()


def test_job_id_of_paths():
    jid = str(uuid.uuid4())
    assert job_id_of(f"/jobs/{jid}") == jid
    assert job_id_of(f"/jobs/{jid}/metrics") == jid
    assert job_id_of(f"/jobs/{jid.upper()}/artifacts/backup/x") == jid
    assert job_id_of("/jobs") is None and job_id_of("/jobs/not-a-uuid") is None and job_id_of("/livez") is None


def test_api_writes_one_json_line_per_request_with_job_id(client, tmp_path):
    job_id = submit(client)
    log = tmp_path / "api.log"
    proc, url = start_api({}, log)
    try:
        assert httpx.get(f"{url}/jobs/{job_id}", timeout=10).status_code == 200
        assert httpx.get(f"{url}/jobs/{job_id}/metrics", timeout=10).status_code == 200

        def request_lines():
            lines = []
            for raw in log.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue  # uvicorn's own plain-text lines
                if isinstance(entry, dict) and entry.get("event") == "request":
                    lines.append(entry)
            return lines if any(e.get("path") == f"/jobs/{job_id}/metrics" for e in lines) else None

        lines = wait_for(request_lines, 20, lambda: f"no request line in the log:\n{proc.tail()}")
    finally:
        proc.stop()
    detail = next(e for e in lines if e["path"] == f"/jobs/{job_id}")
    assert detail["job_id"] == job_id and detail["method"] == "GET" and detail["status"] == 200
    assert detail["route"] == "/jobs/{job_id}" and detail["duration_ms"] >= 0
    assert detail["level"] == "info" and "timestamp" in detail
    metrics = next(e for e in lines if e["path"] == f"/jobs/{job_id}/metrics")
    assert metrics["job_id"] == job_id
    probe = [e for e in lines if e["path"] == "/livez"]
    assert probe and all("job_id" not in e for e in probe)


def test_worker_binds_job_id_for_the_duration_of_a_job(monkeypatch):
    from worker import runner

    seen = {}

    def fake_run(job_id):
        seen.update(structlog.contextvars.get_contextvars())
        return "done"

    monkeypatch.setattr(runner, "_run_job", fake_run)
    jid = uuid.uuid4()
    assert runner.run_job(jid) == "done"
    assert seen["job_id"] == str(jid)
    assert "job_id" not in structlog.contextvars.get_contextvars()


def test_metrics_are_plain_prometheus_text(client):
    body = client.get("/metrics").text
    assert "# TYPE plateau_http_request_duration_seconds histogram" in body
    assert "# TYPE plateau_jobs gauge" in body
