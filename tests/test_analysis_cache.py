"""Diagnoses are cached per metrics version: a repeated request is served from memory, anything new recomputes."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from models.db import session_scope
from models.lifecycle import record_event, upsert_epoch
from models.tables import Job
from tests.test_analysis_api import healthy_rows, job_with_history, overfitting_rows


def counting(monkeypatch) -> list[int]:
    import analysis
    from models.analysis import service

    runs: list[int] = []
    original = analysis.diagnose

    def counted(history, context, **kw):
        runs.append(len(history))
        return original(history, context, **kw)

    monkeypatch.setattr(service.analysis, "diagnose", counted)
    return runs


def test_repeated_request_is_served_without_rediagnosing(client, monkeypatch):
    jid = job_with_history(client, overfitting_rows())
    runs = counting(monkeypatch)
    first = client.get(f"/jobs/{jid}/analysis").json()
    second = client.get(f"/jobs/{jid}/analysis").json()
    assert first == second and first["verdict"] == "stagnating"
    assert runs == [10]


def test_a_new_epoch_a_state_change_or_an_lr_cut_recomputes(client, monkeypatch):
    jid = job_with_history(client, healthy_rows(8))
    runs = counting(monkeypatch)
    assert client.get(f"/jobs/{jid}/analysis").json()["epochs_analysed"] == 8
    with session_scope() as s:
        upsert_epoch(s, uuid.UUID(jid), healthy_rows(9)[-1])
    assert client.get(f"/jobs/{jid}/analysis").json()["epochs_analysed"] == 9
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(jid)).values(status="cancelled"))
        s.commit()
    assert client.get(f"/jobs/{jid}/analysis").json()["status"] == "cancelled"
    with session_scope() as s:
        record_event(s, uuid.UUID(jid), "lr_reduced", reason="cut", data={"epoch": 5, "from": 1e-3, "to": 1e-4})
        s.commit()
    client.get(f"/jobs/{jid}/analysis")
    assert runs == [8, 9, 9, 9]


def test_overrides_and_rule_subsets_are_separate_entries(client, monkeypatch):
    jid = job_with_history(client, overfitting_rows())
    runs = counting(monkeypatch)
    default = client.get(f"/jobs/{jid}/analysis").json()
    strict = client.get(f"/jobs/{jid}/analysis", params={"overfitting.ratio_threshold": "100"}).json()
    only = client.get(f"/jobs/{jid}/analysis", params={"rules": "plateau"}).json()

    def thresholds(body):
        return next(f["thresholds"] for f in body["findings"] if f["cause"] == "overfitting")

    assert thresholds(default)["ratio_threshold"] == 0.1 and thresholds(strict)["ratio_threshold"] == 100
    assert {f["rule"] for f in only["findings"]} <= {"plateau"}
    assert len(runs) == 3
    assert client.get(f"/jobs/{jid}/analysis", params={"overfitting.ratio_threshold": "100"}).json() == strict
    assert len(runs) == 3
