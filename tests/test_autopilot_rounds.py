"""Autopilot rounds are atomic under every interleaving, on PostgreSQL and on the embedded SQLite file.

Each test forces one interleaving (a crash between the steps of a round, two advancers at once, the periodic
sweep during the worker's hook) and asserts one child per round and no lineage left active. No training: runs are
recorded as a worker would (tests/test_autopilot_logic.py)."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import update
from sqlmodel import select

from models.autopilot import service
from models.autopilot.hooks import after_job_end, sweep_safely
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.settings import get_settings
from models.tables import Autopilot, AutopilotRound, Job, utcnow
from tests.sqlite_app import sqlite_client
from tests.test_autopilot_logic import AUTO, FLAT, RISING, SETTLED, planted, run_as_worker, weights_file  # noqa: F401


@pytest.fixture(params=["postgresql", "sqlite"])
def deployment(request, tmp_path):
    """A client of the app on the suite's PostgreSQL, or on a fresh SQLite file (the embedded deployment)."""
    if request.param == "postgresql":
        yield request.getfixturevalue("client")
    else:
        with sqlite_client(tmp_path) as c:
            yield c


def record_run(job_id, val_accuracy, *, lr=1e-6, ratio=1.2e-7) -> None:
    """A finished run as the worker records it, without the worker's hook (the test drives the autopilot)."""
    jid = uuid.UUID(str(job_id))
    with session_scope() as s:
        for i, va in enumerate(val_accuracy, start=1):
            upsert_epoch(
                s,
                jid,
                {
                    "epoch": i,
                    "val_accuracy": va,
                    "accuracy": va,
                    "loss": 1.1 - va / 2,
                    "val_loss": 1.1 - va / 2,
                    "learning_rate": lr,
                    "update_ratio_head": ratio,
                    "epoch_seconds": 0.1,
                },
            )
        s.execute(update(Job).where(Job.id == jid).values(status="succeeded", finished_at=utcnow()))
        s.commit()


def state(root_id) -> tuple[Autopilot, list[AutopilotRound], list[Job]]:
    """The lineage row, its rounds, and every job forked from any job of the lineage."""
    with session_scope() as s:
        ap = s.exec(select(Autopilot).where(Autopilot.root_job_id == uuid.UUID(str(root_id)))).one()
        rounds = list(s.exec(select(AutopilotRound).where(AutopilotRound.autopilot_id == ap.id)).all())
        ids = {ap.root_job_id} | {r.child_id for r in rounds if r.child_id}
        children = list(s.exec(select(Job).where(Job.parent_id.in_(ids))).all())
        return ap, rounds, children


def finish_lineage(root_id) -> Autopilot:
    """Run the current child to a healthy end: the lineage must end, not stay active."""
    ap, _, _ = state(root_id)
    run_as_worker(ap.current_job_id, SETTLED, lr=1e-4, ratio=2e-3)
    ap, rounds, children = state(root_id)
    assert ap.state == "ended", (ap.end_reason, ap.end_detail)
    assert len(children) == len(rounds) == ap.rounds_done  # one child per round, none untracked
    return ap


def start(client) -> str:
    r = client.post("/jobs", json={**planted(), "autopilot": AUTO})
    assert r.status_code == 202, r.text
    return r.json()["id"]


class Crash(RuntimeError):
    pass


def crash_once(monkeypatch, target, name):
    real = getattr(target, name)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Crash(f"process died in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


def no_second_decision(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a claimed round was decided again")

    monkeypatch.setattr(service, "decide", refuse)


def test_a_crash_after_the_child_was_created_adopts_the_round(deployment, monkeypatch):
    root = start(deployment)
    record_run(root, FLAT)
    crash_once(monkeypatch, service, "_mark")  # the child is committed, the round not yet marked
    with session_scope() as s, pytest.raises(Crash):
        service.advance(s, state(root)[0].id)
    ap, rounds, children = state(root)
    assert ap.rounds_done == 1 and ap.current_job_id == uuid.UUID(root) and len(children) == 1
    assert rounds[0].child_id is None and rounds[0].remedy == "increase_learning_rate"

    no_second_decision(monkeypatch)
    assert sweep_safely()["advanced"] == 1
    ap, rounds, children = state(root)
    assert len(children) == 1 and rounds[0].child_id == children[0].id == ap.current_job_id
    assert children[0].spec["optimizer"]["learning_rate"] == pytest.approx(1e-4)
    sweep_safely()  # nothing left to do
    assert len(state(root)[2]) == 1
    monkeypatch.undo()
    assert finish_lineage(root).end_reason == "healthy"


def test_a_crash_after_the_claim_creates_the_child_from_the_stored_intent(deployment, monkeypatch):
    root = start(deployment)
    record_run(root, FLAT)
    crash_once(monkeypatch, service.analysis_service, "fork")  # claimed, no child yet
    after_job_end(uuid.UUID(root))  # the hook never raises; the sweep catches up
    ap, rounds, children = state(root)
    assert (ap.state, ap.rounds_done, len(rounds), children) == ("active", 1, 1, [])

    no_second_decision(monkeypatch)
    sweep_safely()
    ap, rounds, children = state(root)
    assert len(children) == 1 and ap.current_job_id == children[0].id
    assert children[0].spec["optimizer"]["learning_rate"] == pytest.approx(
        rounds[0].patch["optimizer"]["learning_rate"]
    )
    monkeypatch.undo()
    assert finish_lineage(root).rounds_done == 1


def both_decide_before_either_claims(monkeypatch) -> list:
    """Every caller waits after deciding until a second one has decided too (or 5 s passed); returns the decisions."""
    real = service.decide
    barrier = threading.Barrier(2, timeout=5)
    decisions = []

    def decide(*args, **kwargs):
        step = real(*args, **kwargs)
        decisions.append(step)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return step

    monkeypatch.setattr(service, "decide", decide)
    return decisions


def test_two_advancers_at_once_start_one_round(deployment, monkeypatch):
    root = start(deployment)
    record_run(root, FLAT)
    ap_id = state(root)[0].id
    decisions = both_decide_before_either_claims(monkeypatch)
    errors = []

    def advance():
        try:
            with session_scope() as s:  # a session (and connection) of its own, as two processes would have
                service.advance(s, ap_id, settings=get_settings())
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=advance) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(decisions) == 2  # both decided the same round; one claim won
    ap, rounds, children = state(root)
    assert (ap.state, ap.rounds_done, len(rounds), len(children)) == ("active", 1, 1, 1)
    assert ap.current_job_id == children[0].id == rounds[0].child_id
    monkeypatch.undo()
    finish_lineage(root)


def test_a_sweep_during_the_workers_hook_starts_one_round(deployment, monkeypatch):
    root = start(deployment)
    record_run(root, FLAT)
    decisions = both_decide_before_either_claims(monkeypatch)
    crash_once(monkeypatch, service, "_mark")  # whoever creates the child first dies before marking it
    threads = [threading.Thread(target=after_job_end, args=(uuid.UUID(root),)), threading.Thread(target=sweep_safely)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decisions) == 2
    sweep_safely()
    ap, rounds, children = state(root)
    assert (ap.state, ap.rounds_done, len(rounds), len(children)) == ("active", 1, 1, 1)
    assert ap.current_job_id == children[0].id == rounds[0].child_id
    monkeypatch.undo()
    finish_lineage(root)


def test_a_fork_that_can_never_be_valid_ends_the_lineage_naming_the_field(deployment):
    root = start(deployment)
    run_as_worker(root, FLAT)
    first = state(root)[0].current_job_id
    record_run(first, RISING, lr=1e-4, ratio=3e-3)  # still climbing at healthy steps: the next remedy trains longer
    settings = get_settings().model_copy(update={"max_epochs": 10})  # 7 → 14 epochs is past this service's limit
    with session_scope() as s:
        ap = service.advance(s, state(root)[0].id, settings=settings)
    assert (ap.state, ap.end_reason) == ("ended", "invalid_fork")
    assert "train_longer" in ap.end_detail and "epochs" in ap.end_detail and "10" in ap.end_detail
    ap, rounds, children = state(root)
    assert ap.rounds_done == 1 and len(rounds) == 1 and len(children) == 1  # no round claimed for it
    assert sweep_safely().get("advanced", 0) == 0  # and never retried


def test_a_learning_rate_remedy_takes_the_range_tests_suggested_rate(tmp_path):
    """The round uses the newest succeeded range test's measured rate and records which probe chose it."""
    from models.tables import Probe

    with sqlite_client(tmp_path) as client:
        root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
        jid = uuid.UUID(root["id"])
        chosen = uuid.uuid4()
        with session_scope() as s:
            for pid, status, result, year in (
                (uuid.uuid4(), "succeeded", {"suggested_rate": 1e-2, "usable_range": [1e-4, 1e-1]}, 2020),
                (uuid.uuid4(), "failed", None, 2030),
                (chosen, "succeeded", {"suggested_rate": 3e-4, "usable_range": [1e-5, 1e-3]}, 2025),
            ):
                when = utcnow().replace(year=year)
                s.add(Probe(id=pid, job_id=jid, name="lr_range", status=status, result=result, finished_at=when))
            s.commit()
        run_as_worker(root["id"], FLAT)
        ap, rounds, children = state(root["id"])
        assert children[0].spec["optimizer"]["learning_rate"] == pytest.approx(3e-4)  # not the rule's ×100 (1e-4)
        assert rounds[0].evidence["learning_rate_from"] == "range_test" and rounds[0].evidence["probe_id"] == str(
            chosen
        )
        step = client.get(f"/jobs/{root['id']}/lineage").json()["steps"][1]
        assert step["patch"] == {"optimizer": {"learning_rate": 3e-4}} and step["evidence"]["suggested_lr"] == 3e-4
        assert step["parent_patch_values"] == {"optimizer": {"learning_rate": 1e-6}}
        finish_lineage(root["id"])


def test_without_a_range_test_the_rule_chooses_the_rate(deployment):
    from models.autopilot.measure import measured_learning_rate

    root = start(deployment)
    with session_scope() as s:
        assert measured_learning_rate(s, uuid.UUID(root)) is None


def test_the_ranking_learns_from_first_applications_only(tmp_path):
    """A follow-up carries a remedy further: its outcome measures the second step, not the remedy, so the
    ranking's evidence counts the first application alone (a fresh SQLite file: this tenant's outcomes only)."""
    from models.autopilot import outcomes

    with sqlite_client(tmp_path) as client:
        root = start(client)
        run_as_worker(root, FLAT)
        first = state(root)[0].current_job_id
        run_as_worker(first, RISING, lr=1e-4, ratio=1e-3)  # still climbing: the same remedy, further
        ap, rounds, _ = state(root)
        assert [r.remedy for r in rounds] == ["increase_learning_rate"] * 2 and "follow_up" in rounds[1].evidence
        run_as_worker(ap.current_job_id, [0.3, 0.6, 0.8, 0.975, 0.98, 0.98, 0.975], lr=3e-4, ratio=2.9e-3)
        with session_scope() as s:
            found = outcomes.evidence(s, "default", "val_accuracy")
            forks = outcomes.aggregate(s, "default", "val_accuracy")
        key = ("learning_rate_too_low", "increase_learning_rate")
        assert found[key].n == 1 and found[key].mean_gain == pytest.approx(0.95 - 0.1667, abs=1e-4)
        assert [f["measured"] for f in forks] == [2]  # both forks are still reported


def test_lineages_started_before_claimed_rounds_keep_their_rounds(tmp_path):
    """Migration 0008 writes a round for every autopilot fork recorded before it, so such a lineage neither
    repeats a remedy nor forgets where it was, and adopts a child the old code left outside it."""
    import sqlalchemy as sa
    from alembic import command

    from models.db import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0005")
    root, child, ap = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    with engine.begin() as conn:
        for jid, parent in ((root, None), (child, root)):
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (id, owner, status, spec, spec_hash, parent_id, created_at, attempts, "
                    "cancel_requested, metrics_version) VALUES (:id, 'default', 'running', '{}', 'h', :parent, :now, "
                    "0, 0, 0)"
                ),
                {"id": jid.hex, "parent": parent.hex if parent else None, "now": now},
            )
        conn.execute(
            sa.text(
                "INSERT INTO autopilots (id, root_job_id, owner, config, state, current_job_id, rounds_done, "
                "created_at) VALUES (:id, :root, 'default', '{}', 'active', :root, 0, :now)"
            ),
            {"id": ap.hex, "root": root.hex, "child": child.hex, "now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO fork_outcomes (parent_id, child_id, owner, cause, remedies, patch, metric, autopilot_id, "
                "round, created_at) VALUES (:root, :child, 'default', 'learning_rate_too_low', "
                "'[\"increase_learning_rate\"]', '{\"optimizer\": {\"learning_rate\": 0.0001}}', 'val_accuracy', "
                ":ap, 1, :now)"
            ),
            {"root": root.hex, "child": child.hex, "ap": ap.hex, "now": now},
        )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT round, remedy, child_id, patch, start FROM autopilot_rounds")).all()
        adopted = conn.execute(sa.text("SELECT rounds_done, current_job_id FROM autopilots")).one()
    assert [(r[0], r[1], uuid.UUID(r[2]), r[4]) for r in rows] == [(1, "increase_learning_rate", child, "cold")]
    # the old code crashed between the child and the counter: the lineage adopts the child it had left outside
    assert (adopted[0], uuid.UUID(adopted[1])) == (1, child)
    command.downgrade(cfg, "0005")  # and back, losing nothing the older revision had
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fork_outcomes")).scalar() == 1
    engine.dispose()
