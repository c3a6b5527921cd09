"""Bodies the API refuses: the autopilot body is as strict as the job spec, and a 422 never echoes a huge input
whole — not its values, not its keys, not the `loc` that names them (in-process app, real PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.specs import small_spec

HUGE_KEY = "k" * 100_000


@pytest.fixture
def job(client):
    created = client.post("/jobs", json=small_spec()).json()
    yield created
    client.post(f"/jobs/{created['id']}/cancel")


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"max_rounds": "3"}, "max_rounds", "valid integer"),
        ({"max_rounds": 3.0}, "max_rounds", "valid integer"),
        ({"max_rounds": True}, "max_rounds", "valid integer"),
        ({"min_gain": "0.1"}, "min_gain", "valid number"),
        ({"min_confidence": False}, "min_confidence", "valid number"),
    ],
)
def test_the_autopilot_body_is_strict(client, job, body, field, fragment):
    r = client.post(f"/jobs/{job['id']}/autopilot", json=body)
    assert r.status_code == 422, r.text
    assert any(e["loc"] == ["body", field] and fragment in e["msg"] for e in r.json()["detail"]), r.json()
    nested = client.post("/jobs", json={**small_spec(), "autopilot": body})
    assert nested.status_code == 422, nested.text
    assert any(e["loc"] == ["body", "autopilot", field] for e in nested.json()["detail"]), nested.json()


def test_a_well_typed_autopilot_body_is_accepted(client, job):
    r = client.post(f"/jobs/{job['id']}/autopilot", json={"max_rounds": 2, "min_gain": 0, "min_confidence": 0.5})
    assert r.status_code == 201, r.text
    assert r.json()["config"]["max_rounds"] == 2 and r.json()["config"]["min_gain"] == 0


@pytest.mark.parametrize(
    ("path", "body", "loc_prefix"),
    [
        ("/jobs/{id}/fork", {"patch": {HUGE_KEY: 1}}, ["body", "spec"]),
        ("/jobs/{id}/fork", {"patch": {"dataset": {HUGE_KEY: 1}}}, ["body", "spec", "dataset"]),
        ("/jobs", {**small_spec(), HUGE_KEY: 1}, ["body"]),
        ("/jobs", {**small_spec(), "dataset": {"train_dir": "shapes/train", HUGE_KEY: 1}}, ["body", "dataset"]),
    ],
)
def test_a_100_kb_key_is_not_echoed_whole(client, job, path, body, loc_prefix):
    r = client.post(path.format(id=job["id"]), json=body)
    assert r.status_code == 422, r.text[:500]
    assert len(r.content) < 2_000, len(r.content)
    errors = r.json()["detail"]
    named = [e for e in errors if e["loc"][: len(loc_prefix)] == loc_prefix and len(e["loc"]) > len(loc_prefix)]
    key = named[0]["loc"][len(loc_prefix)]
    assert key.startswith("kkkk") and key.endswith("…") and len(key) <= 201, key[:50]
