"""GET /jobs/{id}/analysis on stored histories, and POST /jobs/{id}/fork."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.tables import Job
from tests.specs import small_spec


def job_with_history(client, rows: list[dict], counts: dict | None = None, spec: dict | None = None) -> str:
    job = client.post("/jobs", json=spec or small_spec(epochs=len(rows))).json()
    jid = uuid.UUID(job["id"])
    with session_scope() as s:
        for row in rows:
            upsert_epoch(s, jid, row)
        s.execute(update(Job).where(Job.id == jid).values(status="succeeded", class_counts=counts))
        s.commit()
    return job["id"]


def overfitting_rows(n: int = 10) -> list[dict]:
    rows = []
    for e in range(1, n + 1):
        rows.append(
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
        )
    return rows


def healthy_rows(n: int = 10) -> list[dict]:
    return [
        {
            "epoch": e,
            "loss": 1.0 / e,
            "accuracy": 0.5 + 0.045 * e,
            "train_eval_loss": 1.0 / e,
            "train_eval_accuracy": 0.5 + 0.045 * e,
            "val_loss": 1.02 / e,
            "val_accuracy": 0.5 + 0.044 * e,
            "learning_rate": 1e-3,
            "update_ratio_head": 1e-3,
        }
        for e in range(1, n + 1)
    ]


def test_overfitting_diagnosis_with_evidence_and_remedies(client):
    jid = job_with_history(client, overfitting_rows())
    r = client.get(f"/jobs/{jid}/analysis")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"] == "stagnating" and body["status"] == "succeeded"
    over = next(f for f in body["findings"] if f["cause"] == "overfitting")
    assert over["rule"] == "overfitting" and 0 < over["confidence"] <= 1
    assert over["thresholds"]["ratio_threshold"] == 0.1
    assert over["observed"]["loss_ratio"] > 0.1 and over["epochs"]
    assert all(rem["id"] and rem["text"] for rem in over["remedies"])
    assert any(rem["patch"] for rem in over["remedies"])


def test_healthy_job_gets_a_healthy_verdict(client):
    jid = job_with_history(client, healthy_rows())
    body = client.get(f"/jobs/{jid}/analysis").json()
    assert body["verdict"] == "healthy" and body["findings"] == [] and body["primary_cause"] is None


def test_too_few_epochs_is_insufficient_data(client):
    jid = job_with_history(client, healthy_rows(2))
    body = client.get(f"/jobs/{jid}/analysis").json()
    assert body["verdict"] == "insufficient_data"
    assert any("epoch" in a["reason"] for a in body["abstentions"])


def test_rule_parameters_are_overridable_by_query(client):
    jid = job_with_history(client, overfitting_rows())
    default = client.get(f"/jobs/{jid}/analysis", params={"rules": "overfitting"}).json()
    assert any(f["cause"] == "overfitting" for f in default["findings"])
    strict = client.get(f"/jobs/{jid}/analysis", params={"rules": "overfitting", "overfitting.min_gap": 0.9}).json()
    assert not any(f["cause"] == "overfitting" for f in strict["findings"])
    r = client.get(f"/jobs/{jid}/analysis", params={"overfitting.no_such_param": 1})
    assert r.status_code == 422 and "no_such_param" in r.text
    r = client.get(f"/jobs/{jid}/analysis", params={"rules": "astrology"})
    assert r.status_code == 422 and "astrology" in r.text


def test_imbalance_from_class_counts(client):
    counts = {"train": {"a": 200, "b": 10, "c": 12}, "val": {"a": 20, "b": 5, "c": 5}}
    jid = job_with_history(client, [], counts=counts, spec=small_spec(epochs=3))  # before the first epoch
    body = client.get(f"/jobs/{jid}/analysis").json()
    imb = next(f for f in body["findings"] if f["cause"] == "class_imbalance")
    assert imb["observed"]["count_ratio"] == 20
    assert any(rem["patch"] == {"class_weight": "balanced"} for rem in imb["remedies"])
    # counts alone are a pre-training warning: a run with epochs and no recall evidence is not judged on them
    jid = job_with_history(client, healthy_rows(3), counts=counts)
    body = client.get(f"/jobs/{jid}/analysis").json()
    assert "class_imbalance" not in {f["cause"] for f in body["findings"]} and body["verdict"] != "stagnating"


def test_fork_applies_remedy_and_patch_and_links_lineage(client):
    jid = job_with_history(client, overfitting_rows())
    over = next(f for f in client.get(f"/jobs/{jid}/analysis").json()["findings"] if f["cause"] == "overfitting")
    remedy = next(rem for rem in over["remedies"] if rem["patch"])
    r = client.post(f"/jobs/{jid}/fork", json={"apply": [remedy["id"]], "patch": {"epochs": 7}})
    assert r.status_code == 202, r.text
    child = r.json()
    assert child["status"] == "queued" and child["parent_id"] == jid and child["spec"]["epochs"] == 7
    for section, values in remedy["patch"].items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert child["spec"][section][key] == value
        else:
            assert child["spec"][section] == values
    assert client.get(f"/jobs/{jid}").json()["children"] == [child["id"]]
    assert client.get(f"/jobs/{child['id']}").json()["ancestors"] == [jid]
    grandchild = client.post(f"/jobs/{child['id']}/fork", json={"patch": {"batch_size": 4}}).json()
    assert client.get(f"/jobs/{grandchild['id']}").json()["ancestors"] == [child["id"], jid]


def test_fork_refuses_unknown_remedy_and_invalid_patch(client):
    jid = job_with_history(client, overfitting_rows())
    r = client.post(f"/jobs/{jid}/fork", json={"apply": ["sacrifice_a_goat"]})
    assert r.status_code == 422 and "available" in r.text
    r = client.post(f"/jobs/{jid}/fork", json={"patch": {"regularization": {"dropout": 3}}})
    assert r.status_code == 422 and "dropout" in r.text
    r = client.post(f"/jobs/{jid}/fork", json={"patch": {"dataset": {"train_dir": "../../etc"}}})
    assert r.status_code == 422
    assert client.post(f"/jobs/{uuid.uuid4()}/fork", json={}).status_code == 404
    assert client.get(f"/jobs/{uuid.uuid4()}/analysis").status_code == 404
