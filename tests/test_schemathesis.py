"""Property-based tests of the whole HTTP surface from the OpenAPI schema: no input may produce a 5xx.

Schemathesis generates valid and invalid requests for every operation in `/openapi.json` and sends them
to the in-process app (real PostgreSQL and Redis, see conftest.py). Path parameters are sometimes
replaced by ids of jobs seeded here (queued, running, succeeded with a history and artifacts), and job
specs sometimes get real dataset paths, so the requests reach the code behind the 404s and 422s too.

`GET /jobs/{id}/events` is a stream that only ends when its job does, so each of its calls is cut after
STREAM_SECONDS (what it sent until then is kept and checked). Generation is derandomized: a run sends
the same requests every time, so a failure reproduces.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from sqlalchemy import update

from api.main import app
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.settings import get_settings
from models.tables import Job, JobStatus
from tests.specs import small_spec

EXAMPLES_PER_OPERATION = 50
STREAM_SECONDS = 2  # an event stream of a job that is not finished is cut after this long

ARTIFACT_FILES = ("model.keras", "backup/epoch.json", "tensorboard/train/events.out.tfevents.1")
SEEDED: list[str] = []  # ids of real jobs, filled by the `seeded_jobs` fixture before any case is drawn


def _history(n: int = 8) -> list[dict]:
    """Epoch rows that overfit, so the analysis has findings and remedies to fork with."""
    return [{"epoch": e, "loss": 1.0 / e, "accuracy": min(1.0, 0.5 + 0.06 * e), "learning_rate": 1e-3,
             "train_eval_loss": 0.9 / e, "train_eval_accuracy": min(1.0, 0.5 + 0.06 * e),
             "val_loss": 0.8 + 0.05 * max(0, e - 3), "val_accuracy": 0.6} for e in range(1, n + 1)]


def _seed(client) -> list[str]:
    ids = []
    for status in ("queued", "running", "succeeded", "failed"):
        r = client.post("/jobs", json=small_spec(epochs=8, name=f"schemathesis-{status}"))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        jid = uuid.UUID(ids[-1])
        if status == "queued":
            continue
        with session_scope() as s:
            for row in _history():
                upsert_epoch(s, jid, row)
            s.execute(update(Job).where(Job.id == jid).values(status=status, class_counts={"a": 8, "b": 8, "c": 8}))
            s.commit()
    # the succeeded job has a model, a checkpoint and a TensorBoard file to list and download
    base = get_settings().artifacts_dir.resolve() / ids[2]
    for rel in ARTIFACT_FILES:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"\x00plateau")
    return ids


@pytest.fixture(scope="module", autouse=True)
def seeded_jobs(client) -> Iterator[list[str]]:
    before = {j["id"] for j in _all_jobs(client)}
    SEEDED[:] = _seed(client)
    with pytest.MonkeyPatch.context() as mp:
        # No webhook may leave this machine, whatever URL a generated spec names.
        mp.setattr("api.jobs.service.notify", lambda *a, **k: None)
        yield SEEDED
    # Leave the shared tenant's active-job quota as it was for the tests that run after this module.
    for job in _all_jobs(client):
        if job["id"] not in before and job["status"] in (JobStatus.queued.value, JobStatus.running.value):
            client.post(f"/jobs/{job['id']}/cancel")


def _all_jobs(client) -> list[dict]:
    jobs, cursor = [], None
    while True:
        page = client.get("/jobs", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        jobs += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


def flatmap_path_parameters(context, path_parameters):
    """Half of the time, aim at a real job, and at one of its real files (the rest of the path stays generated)."""
    if not isinstance(path_parameters, dict) or "job_id" not in path_parameters or not SEEDED:
        return st.just(path_parameters)
    real = st.sampled_from(SEEDED).map(lambda jid: {**path_parameters, "job_id": jid})
    if "path" in path_parameters:
        real = st.tuples(real, st.sampled_from([*ARTIFACT_FILES, path_parameters["path"]])).map(
            lambda pair: {**pair[0], "path": pair[1]})
    return st.one_of(st.just(path_parameters), real)


def _rule_parameters() -> list[str]:
    from analysis.rules import RULES

    return [f"{rule.id}.{name}" for rule in RULES.values() for name in rule.Params.model_fields]


# `GET /jobs/{id}/analysis` also takes `RULE.PARAM=<JSON or text>` overrides that the schema cannot list.
OVERRIDE_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=3).map(str), st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: json.dumps(x)),
    st.sampled_from(["true", "null", "[]", "{}", '"val_loss"', "val_accuracy", "max", ""]),
    st.text(max_size=8),
)


def flatmap_query(context, query):
    """Half of the time, add rule parameter overrides (known and unknown names) to an analysis request."""
    if not context.operation.path.endswith("/analysis") or not isinstance(query, (dict, type(None))):
        return st.just(query)
    names = st.one_of(st.sampled_from(_rule_parameters()), st.text(min_size=1, max_size=12).map(lambda t: f"overfitting.{t}"))
    overrides = st.dictionaries(names, OVERRIDE_VALUES, min_size=1, max_size=3)
    return st.one_of(st.just(query), overrides.map(lambda extra: {**(query or {}), **extra}))


def flatmap_body(context, body):
    """Half of the time, point a generated spec at the real image set so it passes the path checks."""
    if context.operation.path != "/jobs" or not isinstance(body, dict) or not isinstance(body.get("dataset"), dict):
        return st.just(body)

    def real_paths(use_val_dir: bool) -> dict:
        dataset = {**body["dataset"], "train_dir": "shapes/train"}
        if use_val_dir:
            dataset["val_dir"] = "shapes/val"
            dataset.pop("validation_split", None)
        elif dataset.get("val_dir") is not None:
            dataset["val_dir"] = "shapes/val"
        spec = {**body, "dataset": dataset}
        if isinstance(spec.get("model"), dict) and spec["model"].get("weights") not in (None, "imagenet"):
            spec["model"] = {**spec["model"], "weights": None}
        return spec

    return st.one_of(st.just(body), st.booleans().map(real_paths))


schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.hook(flatmap_path_parameters)
schema.hook(flatmap_body)
schema.hook(flatmap_query)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error(case):
    stream = case.operation.path.endswith("/events")
    case.call_and_validate(checks=[not_a_server_error], **({"timeout": STREAM_SECONDS} if stream else {}))


def test_after_epoch_beyond_the_epoch_column_is_422_not_500(client):
    """Found by the test above: a cursor past the 32-bit epoch column reached PostgreSQL and failed there."""
    jid = SEEDED[2]
    assert client.get(f"/jobs/{jid}/metrics", params={"after_epoch": 2**31}).status_code == 422
    page = client.get(f"/jobs/{jid}/metrics", params={"after_epoch": 2**31 - 1}).json()
    assert page["items"] == [] and page["next_after_epoch"] == 2**31 - 1


def test_page_sizes_above_the_limit_are_422(client):
    """The bounds the schema states are enforced, not only published: no page is larger than 1000 rows."""
    jid = SEEDED[2]
    assert client.get("/jobs", params={"limit": 1001}).status_code == 422
    assert client.get(f"/jobs/{jid}/metrics", params={"limit": 1001}).status_code == 422
    assert client.get("/jobs", params={"limit": 1000}).status_code == 200
