"""GET /jobs/{id}/model, /artifacts and /artifacts/{path}: faked artifact folders, no training."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from api.auth import create_key
from models.db import session_scope
from models.settings import Settings, get_settings
from models.tables import Job
from tests.specs import small_spec


def submit(client, **headers) -> str:
    r = client.post("/jobs", json=small_spec(), headers=headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def set_job(job_id: str, **values) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(**values))
        s.commit()


def fake_artifacts(job_id: str, *, model: bool = True) -> dict[str, bytes]:
    """Files as the worker leaves them, keyed by their path relative to the job's folder."""
    folder = get_settings().artifacts_dir.resolve() / job_id
    files = {
        "backup/chkpt.weights.h5": os.urandom(3000),
        "backup/training_metadata.json": b'{"epoch": 2}',
        "tensorboard/train/events.out.tfevents.1.host.1.v2": os.urandom(700),
        "tensorboard/validation/events.out.tfevents.1.host.2.v2": os.urandom(500),
    }
    if model:
        files["model.keras"] = os.urandom(10_000)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


@pytest.fixture
def succeeded(client):
    job_id = submit(client)
    files = fake_artifacts(job_id)
    folder = get_settings().artifacts_dir.resolve() / job_id
    set_job(job_id, status="succeeded", artifacts_dir=str(folder), model_path=str(folder / "model.keras"))
    return job_id, files, folder


def test_download_the_model(client, succeeded):
    job_id, files, _ = succeeded
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 200, r.text
    assert r.content == files["model.keras"]
    assert r.headers["content-type"] == "application/octet-stream"
    assert f'filename="{job_id}.keras"' in r.headers["content-disposition"]


def test_listing_has_model_checkpoints_and_tensorboard_with_sizes(client, succeeded):
    job_id, files, folder = succeeded
    r = client.get(f"/jobs/{job_id}/artifacts")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["job_id"] == job_id and body["status"] == "succeeded" and body["artifacts_dir"] == str(folder)
    assert body["model"]["path"] == "model.keras" and body["model"]["size"] == len(files["model.keras"])
    assert body["model"]["url"].endswith(f"/jobs/{job_id}/model")
    assert {c["path"]: c["size"] for c in body["checkpoints"]} == {
        k: len(v) for k, v in files.items() if k.startswith("backup/")
    }
    board = body["tensorboard"]
    assert board["dir"] == str(folder / "tensorboard")
    assert {f["path"]: f["size"] for f in board["files"]} == {
        k: len(v) for k, v in files.items() if k.startswith("tensorboard/")
    }
    assert board["size"] == sum(len(v) for k, v in files.items() if k.startswith("tensorboard/"))
    assert body["total_size"] == sum(len(v) for v in files.values())
    for item in [*body["checkpoints"], *board["files"]]:  # every listed url downloads that file
        got = client.get(item["url"])
        assert got.status_code == 200 and got.content == files[item["path"]], item


def test_model_is_409_until_succeeded_and_404_naming_why(client):
    job_id = submit(client)
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 409 and "has not started" in r.json()["detail"]
    set_job(job_id, status="running")
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 409 and "still running" in r.json()["detail"]
    set_job(job_id, status="failed")
    assert client.get(f"/jobs/{job_id}/model").status_code == 409

    set_job(job_id, status="succeeded")
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 404 and "recorded no model" in r.json()["detail"]
    folder = get_settings().artifacts_dir.resolve() / job_id
    set_job(job_id, model_path=str(folder / "model.keras"))
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 404 and "missing" in r.json()["detail"]

    listing = client.get(f"/jobs/{job_id}/artifacts").json()
    assert listing["model"] is None and listing["checkpoints"] == [] and listing["tensorboard"] is None
    assert listing["total_size"] == 0


def test_running_job_lists_checkpoints_but_no_model(client):
    job_id = submit(client)
    files = fake_artifacts(job_id, model=False)
    set_job(job_id, status="running")
    body = client.get(f"/jobs/{job_id}/artifacts").json()
    assert body["model"] is None
    assert len(body["checkpoints"]) == 2 and body["tensorboard"]["size"] > 0
    assert body["total_size"] == sum(len(v) for v in files.values())


def test_paths_cannot_leave_the_job_folder(client, succeeded, tmp_path):
    job_id, _, folder = succeeded
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not yours")
    # a symlink planted in the job's folder is neither listed nor served
    (folder / "tensorboard" / "leak").symlink_to(secret)
    (folder / "backup" / "leakdir").symlink_to(tmp_path, target_is_directory=True)
    listing = client.get(f"/jobs/{job_id}/artifacts").json()
    listed = [f["path"] for f in [*listing["checkpoints"], *listing["tensorboard"]["files"]]]
    assert not any("leak" in p for p in listed)
    for path in (
        "tensorboard/leak",
        "backup/leakdir/secret.txt",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "backup/..%2F..%2F" + job_id,
        "does-not-exist",
        "backup",
    ):
        r = client.get(f"/jobs/{job_id}/artifacts/{path}")
        assert r.status_code in (404, 422), (path, r.status_code)
        assert b"not yours" not in r.content and b"root:" not in r.content
    r = client.get(f"/jobs/{job_id}/artifacts/..%2F{uuid.uuid4()}")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "path"]

    # a model path in the database never points the download outside the job's folder
    set_job(job_id, model_path=str(secret))
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 404 and b"not yours" not in r.content
    set_job(job_id, model_path=str(folder / ".." / ".."))
    assert client.get(f"/jobs/{job_id}/model").status_code == 404
    set_job(job_id, model_path=str(folder / "model.keras"))
    (folder / "model.keras").unlink()
    (folder / "model.keras").symlink_to(secret)
    r = client.get(f"/jobs/{job_id}/model")
    assert r.status_code == 404 and b"not yours" not in r.content


def test_artifacts_are_tenant_scoped(client):
    settings = Settings(auth_enabled=True)
    client.app.dependency_overrides[get_settings] = lambda: settings
    try:
        with session_scope() as s:
            a = {"Authorization": f"Bearer {create_key(session=s, tenant=f'a-{uuid.uuid4().hex[:6]}')}"}
            b = {"Authorization": f"Bearer {create_key(session=s, tenant=f'b-{uuid.uuid4().hex[:6]}')}"}
        job_id = submit(client, **a)
        files = fake_artifacts(job_id)
        folder = Path(get_settings().artifacts_dir).resolve() / job_id
        set_job(job_id, status="succeeded", model_path=str(folder / "model.keras"))
        for path in (
            f"/jobs/{job_id}/model",
            f"/jobs/{job_id}/artifacts",
            f"/jobs/{job_id}/artifacts/backup/chkpt.weights.h5",
        ):
            assert client.get(path, headers=b).status_code == 404, path
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=a).status_code == 200, path
        assert client.get(f"/jobs/{job_id}/model", headers=a).content == files["model.keras"]
    finally:
        client.app.dependency_overrides.clear()
