"""Cached analysis histories: topped up with new epochs, reloaded whenever the new rows do not explain the version."""

from __future__ import annotations

import uuid

import pytest

from analysis import EpochRecord
from models.analysis import history_cache
from models.analysis import service as analysis_service
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.tables import Job
from tests.specs import small_spec


class Rows:
    """A job's rows as the loader sees them, counting full and partial loads."""

    def __init__(self, n: int):
        self.rows = {e: EpochRecord(epoch=e, loss=1.0 / e) for e in range(1, n + 1)}
        self.calls: list[int | None] = []

    def load(self, after: int | None) -> list[EpochRecord]:
        self.calls.append(after)
        return [r for e, r in sorted(self.rows.items()) if after is None or e > after]


@pytest.fixture(autouse=True)
def empty_cache():
    history_cache.clear()
    yield
    history_cache.clear()


def test_unchanged_version_reads_nothing_and_a_new_epoch_reads_only_it():
    job, rows = uuid.uuid4(), Rows(3)
    first = history_cache.history(job, 3, rows.load, max_epochs=100)
    assert history_cache.history(job, 3, rows.load, max_epochs=100) is first
    rows.rows[4] = EpochRecord(epoch=4, loss=0.2)
    topped = history_cache.history(job, 4, rows.load, max_epochs=100)
    assert [r.epoch for r in topped] == [1, 2, 3, 4] and rows.calls == [None, 3]
    assert [r.epoch for r in first] == [1, 2, 3]  # earlier callers keep their list


def test_a_rerun_epoch_or_a_retried_write_reloads_everything():
    job, rows = uuid.uuid4(), Rows(3)
    history_cache.history(job, 3, rows.load, max_epochs=100)
    rows.rows[2] = EpochRecord(epoch=2, loss=9.0)  # an older epoch replaced: one bump, no new row after epoch 3
    reloaded = history_cache.history(job, 4, rows.load, max_epochs=100)
    assert rows.calls == [None, 3, None] and reloaded[1].loss == 9.0
    rows.rows[4] = EpochRecord(epoch=4, loss=0.2)  # one new row but two bumps (a write retried after its commit)
    reloaded = history_cache.history(job, 6, rows.load, max_epochs=100)
    assert rows.calls[-2:] == [4 - 1, None] and [r.epoch for r in reloaded] == [1, 2, 3, 4]


def test_turned_off_or_too_long_histories_are_not_kept():
    job, rows = uuid.uuid4(), Rows(5)
    history_cache.history(job, 5, rows.load, max_epochs=0)
    history_cache.history(job, 5, rows.load, max_epochs=0)
    assert rows.calls == [None, None]
    history_cache.history(job, 5, rows.load, max_epochs=3)
    history_cache.history(job, 5, rows.load, max_epochs=3)
    assert rows.calls == [None, None, None, None]


def test_through_the_database_a_replaced_row_is_seen(client):
    jid = uuid.UUID(client.post("/jobs", json=small_spec()).json()["id"])
    with session_scope() as s:
        for e in (1, 2, 3):
            upsert_epoch(s, jid, {"epoch": e, "loss": 1.0 / e, "val_loss": 1.0})

    def losses() -> list[float]:
        with session_scope() as s:
            return [r.loss for r in analysis_service.history(s, s.get(Job, jid), max_cached_epochs=1000)]

    assert losses() == [1.0, 0.5, 1 / 3]
    with session_scope() as s:
        upsert_epoch(s, jid, {"epoch": 4, "loss": 0.2, "val_loss": 1.0})
    assert losses() == [1.0, 0.5, 1 / 3, 0.2]
    with session_scope() as s:
        upsert_epoch(s, jid, {"epoch": 2, "loss": 0.45, "val_loss": 1.0})  # a resumed attempt re-ran epoch 2
    assert losses() == [1.0, 0.45, 1 / 3, 0.2]
    assert client.get(f"/jobs/{jid}/analysis").json()["epochs_analysed"] == 4
