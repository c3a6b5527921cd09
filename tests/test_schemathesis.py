"""Property-based tests of the whole HTTP surface from the OpenAPI schema: no input may produce a 5xx.

Schemathesis generates valid and invalid requests for every operation in `/openapi.json` and sends them
to the in-process app (real PostgreSQL and Redis, see conftest.py). Path parameters are sometimes
replaced by ids of jobs seeded here (queued, running, succeeded with a history and artifacts), and job
specs sometimes get real dataset paths, so the requests reach the code behind the 404s and 422s too.

`GET /jobs/{id}/events` is a stream that only ends when its job does, so each of its calls is cut after
STREAM_SECONDS (what it sent until then is kept and checked). Generation is derandomized: a run sends
the same requests every time, so a failure reproduces.

The whole run happens twice, on PostgreSQL and on SQLite (the embedded default). Half of the job specs and
fork bodies carry one hostile value that JSON parsers accept but no field should: NaN and Infinity, numbers
beyond any range, lone surrogates, NULs, huge strings and deep nesting; and every such value is also put in
every place of an otherwise valid body (`test_every_hostile_value_anywhere_in_a_valid_body_is_refused`).
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
from tests.sqlite_app import sqlite_client

EXAMPLES_PER_OPERATION = 50
# An event stream of a job that is not finished is cut after this long (1 s once timed out a 404 under load).
STREAM_SECONDS = 2

ARTIFACT_FILES = ("model.keras", "backup/epoch.json", "tensorboard/train/events.out.tfevents.1")
SEEDED: list[str] = []  # ids of real jobs, filled by the `seeded_jobs` fixture before any case is drawn


def _history(n: int = 8) -> list[dict]:
    """Epoch rows that overfit, so the analysis has findings and remedies to fork with."""
    return [
        {
            "epoch": e,
            "loss": 1.0 / e,
            "accuracy": min(1.0, 0.5 + 0.06 * e),
            "learning_rate": 1e-3,
            "train_eval_loss": 0.9 / e,
            "train_eval_accuracy": min(1.0, 0.5 + 0.06 * e),
            "val_loss": 0.8 + 0.05 * max(0, e - 3),
            "val_accuracy": 0.6,
        }
        for e in range(1, n + 1)
    ]


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


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def api(request, client, tmp_path_factory):
    """The whole run once on PostgreSQL and once on SQLite (the embedded default): each refuses other inputs."""
    if request.param == "postgresql":
        yield client
        return
    with sqlite_client(tmp_path_factory.mktemp("sqlite")) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def seeded_jobs(api) -> Iterator[list[str]]:
    client = api
    before = {j["id"] for j in _all_jobs(client)}
    SEEDED[:] = _seed(client)
    # No webhook leaves this machine, whatever URL a generated spec names: only a worker runs the outbox sender.
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
            lambda pair: {**pair[0], "path": pair[1]}
        )
    return st.one_of(st.just(path_parameters), real)


def _rule_parameters() -> list[str]:
    from analysis.rules import RULES

    return [f"{rule.id}.{name}" for rule in RULES.values() for name in rule.Params.model_fields]


# `GET /jobs/{id}/analysis` also takes `RULE.PARAM=<JSON or text>` overrides that the schema cannot list.
OVERRIDE_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=3).map(str),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: json.dumps(x)),
    st.sampled_from(["true", "null", "[]", "{}", '"val_loss"', "val_accuracy", "max", ""]),
    st.text(max_size=8),
)


def flatmap_query(context, query):
    """Half of the time, add rule parameter overrides (known and unknown names) to an analysis request."""
    if not context.operation.path.endswith("/analysis") or not isinstance(query, (dict, type(None))):
        return st.just(query)
    names = st.one_of(
        st.sampled_from(_rule_parameters()), st.text(min_size=1, max_size=12).map(lambda t: f"overfitting.{t}")
    )
    overrides = st.dictionaries(names, OVERRIDE_VALUES, min_size=1, max_size=3)
    return st.one_of(st.just(query), overrides.map(lambda extra: {**(query or {}), **extra}))


# What JSON parsers accept but no field should: written as JSON text, since Python's writer never produces some
# of them (a lone surrogate) and refuses others when strict. A huge string, and nesting deeper than any spec.
HOSTILE_LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" + "0" * 400,
    "-1",
    "true",
    '"299"',
    '"\\ud800"',
    '"x\\udfffx"',
    '"\\udc00\\ud800"',
    '"\\u0000"',
    '"shapes/train\\u0000"',
    '"' + "x" * 300 + '"',
    '"' + "/".join(["y" * 255] * 20) + '"',
    '"' + "z" * 200_000 + '"',
    "[" * 40 + "]" * 40,
    '{"a":' * 600 + "{}" + "}" * 600,
]
HOSTILE_SENTINEL = "\u2603hostile\u2603"


VALID_BODIES = {
    "/jobs": small_spec(
        name="n",
        on_stagnation={"action": "none", "rules": ["plateau"]},
        optimizer={"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
        callbacks={"early_stopping": {"min_delta": 0.001, "restore_best_weights": True}},
    ),
    "/jobs/{job_id}/fork": {"apply": [], "patch": {"name": "n", "regularization": {"l2": 0.001}}},
}


def _leaf_paths(value, prefix=()) -> list[tuple]:
    """Every place in a body where a value could go: each existing key and item, and each object's new key."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _leaf_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            paths += _leaf_paths(child, (*prefix, i))
    return paths


def _with_hostile(body, path: tuple, literal: str) -> bytes:
    body = json.loads(json.dumps(body))
    if not path:
        return literal.encode()
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = HOSTILE_SENTINEL
    return json.dumps(body).replace(json.dumps(HOSTILE_SENTINEL), literal).encode()


def hostile(body) -> st.SearchStrategy:
    """The body as raw JSON with one value replaced by a hostile literal (the whole body, when it is not a
    container)."""
    paths = _leaf_paths(body) or [()]
    return st.tuples(st.sampled_from(paths), st.sampled_from(HOSTILE_LITERALS)).map(
        lambda pair: _with_hostile(body, *pair)
    )


def flatmap_body(context, body):
    """Half of the time, point a generated spec at the real image set so it passes the path checks; half of the
    time, put a hostile value somewhere in the body."""
    if context.operation.path not in ("/jobs", "/jobs/{job_id}/fork") or isinstance(body, (bytes, type(None))):
        return st.just(body)
    plain = _real_paths(context, body)
    # Into a generated body, and into one valid but for the hostile value, so it gets past every other check
    # and reaches the database and the merge.
    return st.one_of(
        plain, plain.flatmap(hostile), st.just(VALID_BODIES[context.operation.path]).flatmap(hostile), plain
    )


def _real_paths(context, body) -> st.SearchStrategy:
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
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_gets_a_server_error(case):
    stream = case.operation.path.endswith("/events")
    case.call_and_validate(checks=[not_a_server_error], **({"timeout": STREAM_SECONDS} if stream else {}))


def test_after_epoch_beyond_the_epoch_column_is_422_not_500(api):
    client = api
    """Found by the test above: a cursor past the 32-bit epoch column reached PostgreSQL and failed there."""
    jid = SEEDED[2]
    assert client.get(f"/jobs/{jid}/metrics", params={"after_epoch": 2**31}).status_code == 422
    page = client.get(f"/jobs/{jid}/metrics", params={"after_epoch": 2**31 - 1}).json()
    assert page["items"] == [] and page["next_after_epoch"] == 2**31 - 1


def test_page_sizes_above_the_limit_are_422(api):
    client = api
    """The bounds the schema states are enforced, not only published: no page is larger than 1000 rows."""
    jid = SEEDED[2]
    assert client.get("/jobs", params={"limit": 1001}).status_code == 422
    assert client.get(f"/jobs/{jid}/metrics", params={"limit": 1001}).status_code == 422
    assert client.get("/jobs", params={"limit": 1000}).status_code == 200


@pytest.mark.parametrize("operation", sorted(VALID_BODIES))
def test_every_hostile_value_anywhere_in_a_valid_body_is_refused(api, operation):
    """The generated run above samples these; here every hostile value goes into every place of a body that is
    valid but for it, so each reaches the database and the merge if nothing refuses it first."""
    path = operation.replace("{job_id}", SEEDED[0])
    body = VALID_BODIES[operation]
    for leaf in [*_leaf_paths(body), ()]:
        for literal in HOSTILE_LITERALS:
            r = api.post(path, content=_with_hostile(body, leaf, literal), headers={"content-type": "application/json"})
            assert r.status_code in (202, 400, 413, 422), (leaf, literal[:40], r.status_code, r.text[:300])
            json.loads(r.content, parse_constant=lambda c: pytest.fail(f"{c} in the response to {leaf}"))
            if r.status_code == 202:  # a literal that is a fine value there ("true" for a boolean)
                api.post(f"/jobs/{r.json()['id']}/cancel")
            elif r.status_code == 422 and leaf:  # the field is named (a fork names it in the patch or the spec)
                named = {str(part) for e in r.json()["detail"] for part in e["loc"]}
                assert str(leaf[0]) in named or str(leaf[-1]) in named, (leaf, literal[:40], r.json()["detail"])
