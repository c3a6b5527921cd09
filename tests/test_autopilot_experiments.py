"""Diagnosis by experiment inside the autopilot: a label-noise suspicion is measured (a label check on the job the
next fork starts from) before the lineage decides, and a confirmed check's suspects are left out, cold, with the
check as the round's evidence. Worker steps are simulated by writing what the worker writes."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update
from sqlmodel import select

from analysis import Diagnosis, Finding
from models.autopilot.experiments import wanted
from models.autopilot.hooks import after_job_end, after_probe_end
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.tables import Job, Probe, utcnow
from tests.test_autopilot_logic import AUTO, lineage, planted, weights_file  # noqa: F401

COUNTS = {"train": {f"c{i}": 100 for i in range(3)}, "val": {f"c{i}": 50 for i in range(3)}}


@pytest.fixture
def suspects(data_root) -> list[str]:
    """Three real training files of the test data set (what a label check names), relative to train_dir."""
    train = data_root / "shapes" / "train"
    return [str(f.relative_to(train)) for f in sorted(train.rglob("*.png"))[::7][:3]]


def finding(cause: str, confidence: float) -> Finding:
    return Finding(rule="r", cause=cause, confidence=confidence, summary="", remedies=[])


def test_only_a_suspicion_a_probe_can_measure_and_strong_enough_asks_for_one():
    def of(*findings):
        return wanted(Diagnosis(verdict="stagnating", findings=list(findings), summary=""))

    assert of(finding("label_noise_suspected", 0.5), finding("plateau", 0.9)) == ["label_check"]
    assert of(finding("label_noise_suspected", 0.2)) == []  # too weak a signal to spend a probe on
    assert of(finding("label_noise", 0.9), finding("overfitting", 0.8)) == []  # already measured, or no probe for it


def noisy_run(job_id) -> None:
    """A run the model fits better on the validation labels than on its own training labels (the curves' sign of
    wrong training labels), on 300 training and 150 validation images, then the worker's end-of-job hook."""
    jid = uuid.UUID(str(job_id))
    with session_scope() as s:
        for i, va in enumerate([0.5, 0.7, 0.85, 0.88, 0.9, 0.9, 0.9], start=1):
            upsert_epoch(
                s,
                jid,
                {
                    "epoch": i,
                    "val_accuracy": va,
                    "val_loss": 1.2 - va,
                    "accuracy": 0.55,
                    "loss": 1.0,
                    "train_eval_accuracy": min(va, 0.58),
                    "train_eval_loss": 1.05,
                    "learning_rate": 1e-3,
                    "epoch_seconds": 0.1,
                },
            )
        s.execute(
            update(Job).where(Job.id == jid).values(status="succeeded", finished_at=utcnow(), class_counts=COUNTS)
        )
        s.commit()
    after_job_end(jid)


def finish_label_check(probe_id: uuid.UUID, *, noise_rate: float, issues: list[str]) -> None:
    result = {
        "method": "plateau",
        "images": 300,
        "classes": ["c0", "c1", "c2"],
        "noise_rate": noise_rate,
        "p_value": 0.0,
        "pair_noise": [],
        "issues": [{"file": f, "given": "c0", "suspected": "c1", "score": 0.9} for f in issues],
        "truncated": False,
        "statement": "test",
    }
    with session_scope() as s:
        s.execute(
            update(Probe).where(Probe.id == probe_id).values(status="succeeded", result=result, finished_at=utcnow())
        )
        s.commit()
    after_probe_end("autopilot")


def autopilot_probes(job_id) -> list[Probe]:
    with session_scope() as s:
        return list(
            s.exec(select(Probe).where(Probe.job_id == uuid.UUID(str(job_id)), Probe.trigger == "autopilot")).all()
        )


def test_a_confirmed_label_check_leaves_its_suspects_out_in_a_cold_round(client, suspects):
    spec = {**planted(), "optimizer": {"learning_rate": 1e-3}}
    root = client.post("/jobs", json={**spec, "autopilot": AUTO}).json()["id"]
    noisy_run(root)
    body = lineage(client, root)
    assert body["autopilot"]["state"] == "active" and body["autopilot"]["rounds_done"] == 0  # waits on the check
    (probe,) = autopilot_probes(root)
    assert probe.name == "label_check" and probe.status == "queued"
    assert body["waiting_on"] == [
        {"probe": "label_check", "probe_id": str(probe.id), "job_id": root, "status": "queued"}
    ]
    after_job_end(uuid.UUID(root))  # a second advance while the check runs: no second probe, no round
    assert len(autopilot_probes(root)) == 1 and lineage(client, root)["autopilot"]["rounds_done"] == 0
    finish_label_check(probe.id, noise_rate=0.4, issues=suspects)
    body = lineage(client, root)
    assert body["autopilot"]["rounds_done"] == 1 and body["waiting_on"] == []
    step = body["steps"][1]
    assert step["remedies"] == ["exclude_label_issues"] and step["cause"] == "label_noise"
    assert step["start"] == "cold"
    assert step["evidence"]["label_check"]["probe_id"] == str(probe.id)
    assert step["evidence"]["label_check"]["suspects"] == 3
    child = client.get(f"/jobs/{body['autopilot']['current_job_id']}").json()
    assert child["spec"]["dataset"]["exclude"] == sorted(suspects)
    assert "init_from" not in child["spec"]["model"] or child["spec"]["model"]["init_from"] is None


def test_a_label_check_that_clears_the_labels_lets_the_lineage_decide_without_it(client):
    spec = {**planted(), "optimizer": {"learning_rate": 1e-3}}
    root = client.post("/jobs", json={**spec, "autopilot": AUTO}).json()["id"]
    noisy_run(root)
    (probe,) = autopilot_probes(root)
    finish_label_check(probe.id, noise_rate=0.01, issues=[])
    body = lineage(client, root)
    assert body["autopilot"]["state"] == "ended" or body["autopilot"]["rounds_done"] == 1
    assert all("exclude_label_issues" not in s.get("remedies", []) for s in body["steps"])
    assert len(autopilot_probes(root)) == 1  # one check per job, whatever it found


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_label_check_that_did_not_finish_never_holds_the_lineage(client, status):
    spec = {**planted(), "optimizer": {"learning_rate": 1e-3}}
    root = client.post("/jobs", json={**spec, "autopilot": AUTO}).json()["id"]
    noisy_run(root)
    (probe,) = autopilot_probes(root)
    with session_scope() as s:
        s.execute(update(Probe).where(Probe.id == probe.id).values(status=status, finished_at=utcnow(), error="x"))
        s.commit()
    after_probe_end("autopilot")
    body = lineage(client, root)
    assert body["autopilot"]["state"] == "ended" or body["autopilot"]["rounds_done"] == 1
    assert len(autopilot_probes(root)) == 1
