"""A full artifacts disk, for real: a small tmpfs mounted as the artifacts folder (skipped where this process
may not mount), filled with a file. Writes fail with the kernel's own ENOSPC, leave no partial file and
nothing truncated, the job goes back to the queue naming the path and the free space, and it resumes from
its last checkpoint once the filler is deleted. `/readyz` says so meanwhile."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from api.artifacts.service import files_under
from models import lifecycle
from models.artifacts import disk_full, is_partial, written_atomically
from models.db import session_scope
from models.lifecycle import Fence
from models.settings import Settings, get_settings
from models.tables import Job, JobEvent
from tests.flows import TERMINAL, assert_epoch_rows, wait_status
from tests.procs import start_api, start_worker, wait_for
from tests.specs import running_spec, small_spec

MiB = 1 << 20


@pytest.fixture
def volume(tmp_path):
    """A tmpfs of `size` bytes at a fresh folder; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"volume-{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file taking all but `leave` bytes of the volume's free space."""
    filler = folder / "filler"
    size = shutil.disk_usage(folder).free - leave
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(size, 1))
    return filler


def partials(folder: Path) -> list[str]:
    return [name for _root, _dirs, names in os.walk(folder) for name in names if is_partial(name)]


def test_an_atomic_write_on_a_full_disk_leaves_the_old_file_and_no_partial(volume):
    folder = volume(1 * MiB)
    target = folder / "model.keras"
    target.write_bytes(b"old model" * 1000)
    with pytest.raises(OSError) as raised, written_atomically(target) as tmp:
        tmp.write_bytes(os.urandom(2 * MiB))
    assert raised.value.errno == errno.ENOSPC and disk_full(raised.value) is raised.value
    assert target.read_bytes() == b"old model" * 1000
    assert sorted(p.name for p in folder.iterdir()) == ["model.keras"]


def test_a_checkpoint_on_a_full_disk_keeps_the_last_whole_one(volume):
    import keras
    import numpy as np

    from worker.training.callbacks import ResumableBackup

    folder = volume(8 * MiB)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512), keras.layers.Dense(3)])  # ~140 KB
    model.compile(optimizer="adam", loss="mse")
    backup = ResumableBackup(str(folder / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(0)
    saved = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in saved])
    fill(folder, leave=64 * 1024)
    with pytest.raises(Exception) as raised:
        backup.on_epoch_end(1)
    assert disk_full(raised.value) is not None, raised.value
    assert partials(folder) == []
    assert files_under(folder, "backup")  # the previous checkpoint is still listed, and whole
    (folder / "filler").unlink()
    restored = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512), keras.layers.Dense(3)])
    restored.compile(optimizer="adam", loss="mse")
    again = ResumableBackup(str(folder / "backup"))
    again.set_model(restored)
    again.on_train_begin()
    assert restored._initial_epoch == 1
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), saved))


def test_unfinished_files_are_never_listed(tmp_path):
    for name in ("latest.weights.h5", ".partial-latest.weights.h5", "frozen_base.weights.h5.partial.weights.h5"):
        (tmp_path / "backup" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "backup" / name).write_bytes(b"x")
    assert [f.path for f in files_under(tmp_path, "backup")] == ["backup/latest.weights.h5"]


def test_readyz_reports_an_artifacts_volume_without_room_for_a_checkpoint(client):
    assert client.get("/readyz").status_code == 200
    client.app.dependency_overrides[get_settings] = lambda: Settings(min_free_artifacts_bytes=1 << 62)
    try:
        r = client.get("/readyz")
    finally:
        client.app.dependency_overrides.clear()
    assert r.status_code == 503
    problem = r.json()["failing"]["artifacts"]
    assert str(get_settings().artifacts_dir) in problem and "free" in problem


def test_disk_full_returns_are_bounded_then_the_job_fails_naming_the_path(client):
    with session_scope() as s:
        job = Job(owner="disk-full-test", spec=small_spec(), spec_hash="0" * 64)
        lifecycle.submit(s, job)
        s.commit()
        job_id = job.id
    what = "artifacts disk full writing /artifacts/x/model.keras (1.0 MiB free)"
    outcomes = []
    for _ in range(3):
        with session_scope() as s:
            taken = lifecycle.claim(s, job_id, worker_host="w:1", lease_seconds=60, max_attempts=3)
            fence = Fence(job_id, taken.job.attempts, "w:1")
            outcomes.append(lifecycle.infra_release(s, fence, kind="artifacts_disk_full", what=what, data={}, limit=2))
    assert outcomes == ["requeued", "requeued", "failed"]
    with session_scope() as s:
        done = s.get(Job, job_id)
        assert done.status == "failed" and done.attempts == 1  # returns to the queue are not training failures
        assert "/artifacts/x/model.keras" in done.error and "gave up after 2" in done.error
        events = s.exec(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "state")).all()
        requeues = [e.reason for e in events if e.to_status == "queued" and e.from_status == "running"]
        assert len(requeues) == 2 and all(what in r for r in requeues)


@pytest.mark.slow
def test_a_full_artifacts_disk_requeues_the_job_and_it_resumes_when_space_returns(tmp_path, volume):
    from tests.test_faults import base_env

    folder = volume(640 * MiB)
    env = base_env(
        tmp_path,
        PLATEAU_BROKER_URL=os.environ["PLATEAU_BROKER_URL"],
        PLATEAU_ARTIFACTS_DIR=str(folder),
        PLATEAU_RECONCILE_INTERVAL="6",
        PLATEAU_MAX_INFRA_RETRIES="3",
        PLATEAU_MIN_FREE_ARTIFACTS_BYTES=str(64 * MiB),
        PLATEAU_LEASE_SECONDS="30",
    )
    api_proc, url = start_api(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as api:
            jid = api.post("/jobs", json=running_spec(epochs=4)).json()["id"]
            job_dir = folder / jid
            # the first checkpoint is whole: now leave less room than the next one needs
            wait_for(lambda: (job_dir / "backup" / "training_metadata.json").exists(), 300, worker.tail, 0.05)
            filler = fill(folder, leave=24 * MiB)
            r = api.get("/readyz")
            assert r.status_code == 503 and str(folder) in r.json()["failing"]["artifacts"], r.text

            def disk_full_event():
                found = [e for e in api.get(f"/jobs/{jid}").json()["events"] if e["kind"] == "artifacts_disk_full"]
                return found[0] if found else None

            event = wait_for(disk_full_event, 300, worker.tail, 0.2)
            assert str(folder) in event["reason"] and "free" in event["reason"], event
            assert event["data"]["path"].startswith(str(job_dir / "backup")), event  # the checkpoint it was saving
            # its partial file is gone and its space free again: the disk is not kept full
            assert MiB < event["data"]["free_bytes"] <= 24 * MiB, event
            assert partials(folder) == [] and not (job_dir / "model.keras").exists()
            listing = api.get(f"/jobs/{jid}/artifacts").json()
            assert listing["model"] is None and listing["checkpoints"]
            assert not any(is_partial(Path(c["path"]).name) for c in listing["checkpoints"])
            filler.unlink()  # space returns
            wait_for(lambda: api.get("/readyz").status_code == 200, 30)
            done = wait_status(api, jid, TERMINAL, 600, worker.tail)
            assert done["status"] == "succeeded" and done["attempts"] == 1, done
            states = [(e["from_status"], e["to_status"]) for e in done["events"] if e["kind"] == "state"]
            assert ("running", "queued") in states, states
            assert_epoch_rows(api.get(f"/jobs/{jid}/metrics").json()["items"], 4)
            assert zipfile.is_zipfile(job_dir / "model.keras") and partials(folder) == []
            # resumed from the last checkpoint: at most the epoch whose checkpoint failed ran twice
            assert worker.tail(1_000_000).count("epoch recorded") <= 4 + 1
    finally:
        worker.stop()
        api_proc.stop()
