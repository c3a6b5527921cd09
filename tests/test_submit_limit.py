"""The per-tenant active-job limit holds when submits race: 30 concurrent POST /jobs with a limit of 5 accept exactly
5, on PostgreSQL (advisory lock per tenant) and on the embedded SQLite file (write lock before the count)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.auth import create_key
from models.db import session_scope
from models.settings import Settings, get_settings
from tests.specs import small_spec
from tests.sqlite_app import sqlite_client

LIMIT, CALLERS = 5, 30


def race(client, headers: dict[str, str]) -> list[int]:
    """CALLERS submits at once (each on its own thread, so their transactions overlap); their status codes."""
    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        return list(
            pool.map(lambda _: client.post("/jobs", json=small_spec(), headers=headers).status_code, range(CALLERS))
        )


@pytest.fixture
def limited():
    """Settings with a limit of 5, swapped in for one test."""

    def install(client, **kw):
        settings = Settings(max_active_jobs_per_tenant=LIMIT, **kw)
        client.app.dependency_overrides[get_settings] = lambda: settings
        return settings

    yield install


def test_concurrent_submits_respect_the_limit_on_postgresql(client, limited):
    limited(client, auth_enabled=True)
    tenant = f"race-{uuid.uuid4().hex[:6]}"
    with session_scope() as s:
        key = create_key(session=s, tenant=tenant)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        codes = race(client, headers)
        listed = client.get("/jobs", params={"limit": 100}, headers=headers).json()["items"]
    finally:
        client.app.dependency_overrides.clear()
    assert sorted(codes) == [202] * LIMIT + [429] * (CALLERS - LIMIT), codes
    assert len(listed) == LIMIT and {j["status"] for j in listed} == {"queued"}


def test_concurrent_submits_respect_the_limit_on_sqlite(tmp_path: Path, limited):
    with sqlite_client(tmp_path) as client:
        limited(client)
        try:
            codes = race(client, {})
            listed = client.get("/jobs", params={"limit": 100}).json()["items"]
        finally:
            client.app.dependency_overrides.clear()
    assert sorted(codes) == [202] * LIMIT + [429] * (CALLERS - LIMIT), codes  # no lock errors (500s) either
    assert len(listed) == LIMIT
