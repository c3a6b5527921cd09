"""An epoch signal is declared once, in `contract.epoch.EpochRecord`: the table, the migrations, the API response
and the analysis all take it from there, so adding one to the contract alone makes these tests name what is missing."""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import Field
from sqlalchemy import JSON, inspect
from sqlmodel import Session

import analysis
from contract.epoch import SIGNALS, EpochRead, EpochRecord
from models.db import make_engine, migrate, session_scope
from models.lifecycle import upsert_epoch
from models.tables import EpochMetric, Job, signal_columns
from tests.specs import small_spec


def a_value_of_every_signal() -> dict:
    """A distinct value per signal, of the signal's declared type."""
    row: dict = {"epoch": 3}
    for i, name in enumerate(SIGNALS):
        annotation = str(EpochRecord.model_fields[name].annotation)
        if annotation.startswith("dict[str, int]"):
            row[name] = {"a": i, "b": i + 1}
        elif annotation.startswith("dict"):
            row[name] = {"a": i / 100, "b": None}
        elif annotation.startswith("list"):
            row[name] = [[i, 1], [2, i]]
        elif annotation.startswith("int"):
            row[name] = i
        else:
            row[name] = i + 0.25
    return row


def test_the_contract_declares_the_signals_once_and_the_others_derive_them():
    assert SIGNALS and "epoch" not in SIGNALS
    assert set(SIGNALS) <= set(EpochRead.model_fields)
    assert analysis.EpochRecord is EpochRecord
    columns = EpochMetric.__table__.columns
    missing = [name for name in SIGNALS if name not in columns]
    assert not missing, f"signals without a column: {missing}"
    for name in SIGNALS:
        assert columns[name].nullable, name  # None means "not recorded"
    assert isinstance(columns["confusion"].type, JSON) and isinstance(columns["val_recall"].type, JSON)


def test_a_new_contract_signal_becomes_a_column():
    """The construction itself: a field added to the contract's record is a column of the generated base."""

    class Extended(EpochRecord):
        sharpness: float | None = None
        per_layer: dict[str, float] | None = Field(None)

    base = signal_columns(Extended)
    assert {"sharpness", "per_layer"} <= set(base.model_fields)
    assert set(SIGNALS) <= set(base.model_fields) and "epoch" not in base.model_fields
    assert isinstance(base.model_fields["per_layer"].sa_column.type, JSON)


def test_the_migrations_create_every_signal_column(tmp_path: Path):
    """A signal added to the contract needs its migration; this fails until it has one."""
    engine = make_engine(f"sqlite:///{tmp_path / 'plateau.db'}")
    try:
        migrate(engine)
        migrated = {c["name"] for c in inspect(engine).get_columns("epoch_metrics")}
        assert set(EpochMetric.__table__.columns.keys()) == migrated
        job = Job(spec=small_spec(), spec_hash="x" * 64)
        with Session(engine, expire_on_commit=False) as s:
            s.add(job)
            s.commit()
            upsert_epoch(s, job.id, a_value_of_every_signal())
            stored = EpochRead.model_validate(s.get(EpochMetric, 1))
        assert stored.model_dump(include=set(SIGNALS)) == {
            k: v for k, v in a_value_of_every_signal().items() if k != "epoch"
        }
    finally:
        engine.dispose()


def test_the_metrics_endpoint_answers_every_signal(client):
    r = client.post("/jobs", json=small_spec())
    assert r.status_code == 202, r.text
    job_id = uuid.UUID(r.json()["id"])
    row = a_value_of_every_signal()
    with session_scope() as s:
        upsert_epoch(s, job_id, row)
    items = client.get(f"/jobs/{job_id}/metrics").json()["items"]
    assert len(items) == 1
    assert {name: items[0][name] for name in SIGNALS} == {k: v for k, v in row.items() if k != "epoch"}
