"""API keys, tenant scoping and per-tenant limits (in-process app, real PostgreSQL)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlmodel import select

from api.auth import create_key, revoke_key
from models.db import session_scope
from models.settings import Settings, get_settings
from models.tables import ApiKey
from tests.specs import small_spec


@pytest.fixture
def secured(client):
    settings = Settings(auth_enabled=True, max_active_jobs_per_tenant=3, max_image_size=128)
    client.app.dependency_overrides[get_settings] = lambda: settings
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    with session_scope() as s:
        keys = {
            "a": create_key(session=s, tenant=tenant_a),
            "b": create_key(session=s, tenant=tenant_b),
            "admin": create_key(session=s, tenant="ops", admin=True),
        }
    yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in keys.items()}, keys
    client.app.dependency_overrides.clear()


def test_keys_are_required_and_stored_hashed(secured):
    client, headers, keys = secured
    assert client.get("/jobs").status_code == 401
    assert client.get("/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/jobs", headers=headers["a"]).status_code == 200
    with session_scope() as s:
        hashes = set(s.exec(select(ApiKey.key_hash)).all())
    assert keys["a"] not in hashes and hashlib.sha256(keys["a"].encode()).hexdigest() in hashes


def test_another_tenants_job_is_hidden(secured):
    client, headers, _ = secured
    job = client.post("/jobs", json=small_spec(), headers=headers["a"]).json()
    jid = job["id"]
    for method, path in [
        ("get", f"/jobs/{jid}"),
        ("get", f"/jobs/{jid}/metrics"),
        ("get", f"/jobs/{jid}/analysis"),
        ("post", f"/jobs/{jid}/cancel"),
        ("post", f"/jobs/{jid}/fork"),
    ]:
        kwargs = {"json": {}} if path.endswith("fork") else {}
        r = getattr(client, method)(path, headers=headers["b"], **kwargs)
        assert r.status_code == 404, (path, r.status_code)
        assert getattr(client, method)(path, headers=headers["a"], **kwargs).status_code in (200, 202)
    listed_b = [j["id"] for j in client.get("/jobs", params={"limit": 1000}, headers=headers["b"]).json()["items"]]
    listed_a = [j["id"] for j in client.get("/jobs", params={"limit": 1000}, headers=headers["a"]).json()["items"]]
    listed_admin = [
        j["id"] for j in client.get("/jobs", params={"limit": 1000}, headers=headers["admin"]).json()["items"]
    ]
    assert jid not in listed_b and jid in listed_a and jid in listed_admin
    assert client.get(f"/jobs/{jid}", headers=headers["admin"]).status_code == 200


def test_revoked_key_is_refused(secured):
    client, headers, keys = secured
    with session_scope() as s:
        assert revoke_key(session=s, key=keys["b"])
    assert client.get("/jobs", headers=headers["b"]).status_code == 401


def test_active_job_limit_per_tenant_is_429(secured):
    client, headers, _ = secured
    codes = [client.post("/jobs", json=small_spec(), headers=headers["b"]).status_code for _ in range(4)]
    assert codes == [202, 202, 202, 429]
    r = client.post("/jobs", json=small_spec(), headers=headers["b"])
    assert "max_active_jobs_per_tenant" in r.json()["detail"]
    # the limit is per tenant: another tenant still submits
    assert client.post("/jobs", json=small_spec(), headers=headers["admin"]).status_code == 202


def test_image_size_limit_names_the_limit(secured):
    client, headers, _ = secured
    spec = small_spec()
    spec["dataset"]["image_size"] = 200
    r = client.post("/jobs", json=spec, headers=headers["a"])
    assert r.status_code == 422 and "limit of 128" in r.text


def test_oversized_body_is_413(client):
    limit = get_settings().max_body_bytes
    big = {**small_spec(), "name": "x" * (limit + 10)}
    r = client.post("/jobs", json=big)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    def chunks():
        yield b'{"name": "'
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    r = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_auth_off_acts_as_default_admin(client):
    job = client.post("/jobs", json=small_spec()).json()
    assert client.get(f"/jobs/{job['id']}").status_code == 200
