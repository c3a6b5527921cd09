"""Autopilot decisions, outcomes and endpoints on real PostgreSQL, with epoch rows written as a worker would.

No training here: each job's history is recorded through the same lifecycle calls the worker uses, so every
decision the autopilot takes is checked against a known history. tests/test_autopilot_flow.py trains for real."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import update
from sqlmodel import select

from analysis import Diagnosis, Finding, Remedy
from api.auth import create_key
from contract import predictions
from contract.autopilot import AutopilotSpec
from models.autopilot import service
from models.autopilot.decide import End, Fork, next_step
from models.autopilot.hooks import after_job_end, sweep_safely
from models.db import session_scope
from models.lifecycle import upsert_epoch
from models.settings import Settings, get_settings
from models.tables import Autopilot, ForkOutcome, Job, ValPredictions, utcnow
from tests.specs import small_spec

AUTO = {"max_rounds": 3, "metric": "val_accuracy", "min_gain": 0.01, "min_confidence": 0.7}


@pytest.fixture(scope="module", autouse=True)
def weights_file(data_root):
    # the planted job names a local weights file; nothing trains here, the path only has to exist
    (data_root / "base.weights.h5").write_bytes(b"weights")


def planted(**overrides) -> dict:
    """Planted cause: a learning rate of 1e-6 on a head over a frozen base."""
    spec = small_spec(epochs=7, optimizer={"learning_rate": 1e-6}, **overrides)
    spec["model"] = {**spec["model"], "weights": "base.weights.h5"}
    return spec


def run_as_worker(
    job_id,
    val_accuracy: list[float],
    *,
    train_accuracy: list[float] | None = None,
    lr: float = 1e-6,
    ratio: float = 1.2e-7,
    status: str = "succeeded",
) -> None:
    """Record a finished run: one epoch row per value, then the terminal state, then the worker's hook."""
    jid = uuid.UUID(str(job_id))
    train_accuracy = train_accuracy or val_accuracy
    with session_scope() as s:
        for i, (va, ta) in enumerate(zip(val_accuracy, train_accuracy), start=1):
            upsert_epoch(
                s,
                jid,
                {
                    "epoch": i,
                    "val_accuracy": va,
                    "accuracy": ta,
                    "loss": 1.1 - ta / 2,
                    "val_loss": 1.1 - va / 2,
                    "learning_rate": lr,
                    "update_ratio_head": ratio,
                    "epoch_seconds": 0.1,
                },
            )
        s.execute(update(Job).where(Job.id == jid).values(status=status, finished_at=utcnow()))
        s.commit()
    after_job_end(jid)


FLAT = [0.1667] * 7
RISING = [0.3, 0.45, 0.6, 0.7, 0.8, 0.9, 0.95]  # still climbing at its last epoch
SETTLED = [0.3, 0.6, 0.8, 0.945, 0.95, 0.95, 0.945]  # learned, then levelled off


def lineage(client, job_id, headers=None) -> dict:
    r = client.get(f"/jobs/{job_id}/lineage", headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def best_from_rows(client, job_id) -> float:
    return max(r["val_accuracy"] for r in client.get(f"/jobs/{job_id}/metrics").json()["items"])


def test_first_round_fixes_the_planted_cause_and_the_gain_is_measured(client):
    r = client.post("/jobs", json={**planted(), "autopilot": AUTO})
    assert r.status_code == 202, r.text
    root = r.json()
    assert "autopilot" not in root["spec"]  # kept beside the training spec, not in it
    body = lineage(client, root["id"])
    assert body["autopilot"]["state"] == "active" and body["autopilot"]["config"] == {**AUTO, "target": None}
    assert [s["job_id"] for s in body["steps"]] == [root["id"]]

    # the worker's hook and the sweep race on the same ended job: one child, one round
    with session_scope() as s:
        for i, va in enumerate(FLAT, start=1):
            upsert_epoch(
                s,
                uuid.UUID(root["id"]),
                {
                    "epoch": i,
                    "val_accuracy": va,
                    "accuracy": 0.3,
                    "loss": 1.0,
                    "val_loss": 1.1,
                    "learning_rate": 1e-6,
                    "update_ratio_head": 1.2e-7,
                },
            )
        s.execute(update(Job).where(Job.id == uuid.UUID(root["id"])).values(status="succeeded", finished_at=utcnow()))
        s.commit()
    calls = [threading.Thread(target=after_job_end, args=(uuid.UUID(root["id"]),)) for _ in range(3)]
    calls += [threading.Thread(target=sweep_safely) for _ in range(2)]
    for t in calls:
        t.start()
    for t in calls:
        t.join()
    children = client.get(f"/jobs/{root['id']}").json()["children"]
    assert len(children) == 1
    child = client.get(f"/jobs/{children[0]}").json()
    # the step is far below a healthy one: the remedy raises the rate by its largest factor, ×100
    assert child["spec"]["optimizer"]["learning_rate"] == pytest.approx(1e-4)
    body = lineage(client, child["id"])
    assert body["autopilot"]["rounds_done"] == 1 and body["autopilot"]["current_job_id"] == child["id"]
    step = body["steps"][1]
    assert (step["round"], step["cause"], step["remedies"]) == (1, "learning_rate_too_low", ["increase_learning_rate"])
    assert step["patch"] == {"optimizer": {"learning_rate": 1e-4}} and step["gain"] is None  # not ended yet
    assert body["steps"][0]["diagnosis"]["primary_cause"] == "learning_rate_too_low"

    run_as_worker(child["id"], SETTLED, lr=1e-5, ratio=2e-3)  # settled, with steps of a healthy size
    body = lineage(client, root["id"])
    expected = best_from_rows(client, child["id"]) - best_from_rows(client, root["id"])
    assert body["steps"][1]["gain"] == pytest.approx(expected, abs=1e-6) and expected > 0.7
    assert body["steps"][1]["best"] == pytest.approx(0.95)
    assert body["autopilot"]["state"] == "ended" and body["autopilot"]["end_reason"] == "healthy", body["autopilot"]
    assert len(body["steps"]) == 2
    with session_scope() as s:
        row = s.exec(select(ForkOutcome).where(ForkOutcome.child_id == uuid.UUID(child["id"]))).one()
        assert (row.parent_epochs, row.child_epochs) == (7, 7)
    stats = client.get("/remedies/outcomes", params={"metric": "val_accuracy"}).json()
    item = next(
        i for i in stats["items"] if (i["cause"], i["remedy"]) == ("learning_rate_too_low", "increase_learning_rate")
    )
    assert item["count"] >= 1 and item["measured"] >= 1 and item["improved_share"] > 0 and item["median_gain"] > 0


def test_a_child_still_improving_at_its_end_gets_the_same_remedy_carried_further(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    run_as_worker(root["id"], FLAT)
    first = lineage(client, root["id"])["autopilot"]["current_job_id"]
    # healthy by every rule, but still climbing at its last epoch, with steps a third of a healthy job's
    run_as_worker(first, RISING, lr=1e-4, ratio=1e-3)
    body = lineage(client, root["id"])
    assert body["steps"][1]["diagnosis"]["verdict"] == "healthy"
    assert body["autopilot"]["state"] == "active" and body["autopilot"]["rounds_done"] == 2, body["autopilot"]
    second = client.get(f"/jobs/{body['autopilot']['current_job_id']}").json()
    assert second["parent_id"] == first
    # step_factor: 3e-3 / 1e-3 = 3× the child's rate, on the cause the lineage is repairing
    assert second["spec"]["optimizer"]["learning_rate"] == pytest.approx(3e-4)
    step = body["steps"][2]
    assert (step["round"], step["cause"], step["remedies"]) == (2, "learning_rate_too_low", ["increase_learning_rate"])
    events = second["events"]
    started = next(e for e in events if e["kind"] == "autopilot" and "round 2" in e["reason"])
    assert started["data"]["follow_up"]["best_epoch"] == 7 and started["data"]["confidence"] is None

    # the third run settles at a rate whose steps are healthy: the lineage ends healthy after two rounds
    run_as_worker(second["id"], [0.3, 0.6, 0.8, 0.975, 0.98, 0.98, 0.975], lr=3e-4, ratio=2.9e-3)
    body = lineage(client, root["id"])
    assert body["autopilot"]["end_reason"] == "healthy" and body["autopilot"]["rounds_done"] == 2


def test_a_child_still_improving_at_healthy_step_sizes_trains_longer(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    run_as_worker(root["id"], FLAT)
    first = lineage(client, root["id"])["autopilot"]["current_job_id"]
    run_as_worker(first, RISING, lr=1e-4, ratio=3e-3)  # a higher rate would risk divergence
    body = lineage(client, root["id"])
    second = client.get(f"/jobs/{body['autopilot']['current_job_id']}").json()
    assert body["steps"][2]["remedies"] == ["train_longer"] and body["steps"][2]["patch"] == {"epochs": 14}
    assert second["spec"]["epochs"] == 14 and second["spec"]["optimizer"]["learning_rate"] == pytest.approx(1e-4)


def test_after_one_brake_helped_the_other_brake_its_finding_named_is_loosened(client):
    spec = small_spec(epochs=7, regularization={"dropout": 0.8, "l2": 0.5})
    spec["model"] = {**spec["model"], "weights": "base.weights.h5"}
    root = client.post("/jobs", json={**spec, "autopilot": AUTO}).json()
    client_counts = {"train": {"a": 12, "b": 12}, "val": {"a": 6, "b": 6}}

    def run(job_id, val, penalty):
        jid = uuid.UUID(job_id)
        with session_scope() as s:
            s.execute(update(Job).where(Job.id == jid).values(class_counts=client_counts))
            for i, va in enumerate(val, start=1):
                upsert_epoch(
                    s,
                    jid,
                    {
                        "epoch": i,
                        "val_accuracy": va,
                        "accuracy": va,
                        "train_eval_accuracy": va,
                        "loss": 1.5,
                        "val_loss": 1.4 - va / 2,
                        "train_eval_loss": 1.4 - va / 2 + penalty,  # no gap: validation fits no better than training
                        "regularization_loss": penalty,
                        "learning_rate": 1e-3,
                        "update_ratio_head": 2e-3,
                        "epoch_seconds": 0.1,
                    },
                )
            s.execute(update(Job).where(Job.id == jid).values(status="succeeded", finished_at=utcnow()))
            s.commit()
        after_job_end(jid)

    run(root["id"], [0.5] * 7, penalty=0.9)  # at chance, the penalty 60 % of the loss
    body = lineage(client, root["id"])
    assert body["steps"][1]["cause"] == "regularization_too_strong"
    assert body["steps"][1]["remedies"] == ["reduce_l2"], body["steps"][0]["diagnosis"]
    run(body["steps"][1]["job_id"], SETTLED, penalty=0.05)  # it helped and settled, with dropout still at 0.8
    body = lineage(client, root["id"])
    assert body["autopilot"]["rounds_done"] == 2, body["autopilot"]
    step = body["steps"][2]
    assert (step["cause"], step["remedies"], step["patch"]) == (
        "regularization_too_strong",
        ["reduce_dropout"],
        {"regularization": {"dropout": 0.5}},
    )
    child = client.get(f"/jobs/{step['job_id']}").json()
    assert (
        child["spec"]["regularization"]["l2"] == pytest.approx(0.05)
        and child["spec"]["regularization"]["dropout"] == 0.5
    )


def test_an_unclear_round_goes_on_from_its_child_and_two_without_gain_end_no_gain(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    run_as_worker(root["id"], FLAT)
    first = lineage(client, root["id"])["autopilot"]["current_job_id"]
    run_as_worker(first, FLAT, lr=1e-5)  # the remedy did nothing: unclear, and no lower either
    body = lineage(client, root["id"])
    assert body["steps"][1]["gain"] == pytest.approx(0.0) and body["steps"][1]["comparison"]["direction"] == "unclear"
    assert body["autopilot"]["state"] == "active" and body["autopilot"]["rounds_done"] == 2, body["autopilot"]
    second = body["autopilot"]["current_job_id"]
    assert client.get(f"/jobs/{second}").json()["parent_id"] == first  # the child: level with its parent
    run_as_worker(second, FLAT, lr=1e-5)  # nothing again: two rounds in a row without a gain
    ap = lineage(client, root["id"])["autopilot"]
    assert (ap["end_reason"], ap["rounds_done"]) == ("no_gain", 2) and "two rounds in a row" in ap["end_detail"]


def test_a_worse_round_goes_back_to_the_parent_and_ends_no_gain_when_no_remedy_is_left(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    run_as_worker(root["id"], FLAT)
    ap = lineage(client, root["id"])["autopilot"]
    run_as_worker(ap["current_job_id"], [0.1] * 7, lr=1e-5)  # lower by more than min_gain
    body = lineage(client, root["id"])
    assert body["steps"][1]["comparison"]["direction"] == "worse"
    assert body["autopilot"]["end_reason"] == "no_gain" and body["autopilot"]["rounds_done"] == 1


def test_max_rounds_ends_the_lineage(client):
    root = client.post("/jobs", json={**planted(), "autopilot": {**AUTO, "max_rounds": 1}}).json()
    run_as_worker(root["id"], FLAT)
    ap = lineage(client, root["id"])["autopilot"]
    run_as_worker(ap["current_job_id"], [0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], lr=1e-5)
    ap = lineage(client, root["id"])["autopilot"]
    assert (ap["state"], ap["end_reason"], ap["rounds_done"]) == ("ended", "max_rounds", 1)


def test_cancelling_a_job_of_the_lineage_ends_the_autopilot(client):
    root = client.post("/jobs", json=planted()).json()
    r = client.post(f"/jobs/{root['id']}/autopilot", json=AUTO)
    assert r.status_code == 201, r.text
    run_as_worker(root["id"], FLAT)
    child_id = lineage(client, root["id"])["autopilot"]["current_job_id"]
    assert child_id != root["id"]
    assert client.post(f"/jobs/{child_id}/cancel").json()["status"] == "cancelled"
    sweep_safely()
    ap = lineage(client, child_id)["autopilot"]
    assert (ap["state"], ap["end_reason"]) == ("ended", "cancelled")
    sweep_safely()  # nothing more happens to an ended lineage
    assert client.get(f"/jobs/{child_id}").json()["children"] == []


def test_illegal_autopilot_starts_are_409(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    assert client.post(f"/jobs/{root['id']}/autopilot", json=AUTO).status_code == 409
    run_as_worker(root["id"], FLAT)
    child_id = lineage(client, root["id"])["autopilot"]["current_job_id"]
    assert client.post(f"/jobs/{child_id}/autopilot", json=AUTO).status_code == 409
    cancelled = client.post("/jobs", json=planted()).json()
    client.post(f"/jobs/{cancelled['id']}/cancel")
    r = client.post(f"/jobs/{cancelled['id']}/autopilot", json=AUTO)
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    assert client.post(f"/jobs/{uuid.uuid4()}/autopilot", json=AUTO).status_code == 404


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"max_rounds": 11}, "max_rounds"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"metric": "f1"}, "metric"),
        ({"min_gain": -0.1}, "min_gain"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"rounds": 2}, "rounds"),
    ],
)
def test_bad_autopilot_spec_is_422_naming_the_field(client, bad, field):
    r = client.post("/jobs", json={**planted(), "autopilot": {**AUTO, **bad}})
    assert r.status_code == 422, r.text
    assert any(e["loc"][-2:] == ["autopilot", field] for e in r.json()["detail"]), r.json()
    job = client.post("/jobs", json=planted()).json()
    r = client.post(f"/jobs/{job['id']}/autopilot", json={**AUTO, **bad})
    assert r.status_code == 422 and any(e["loc"][-1] == field for e in r.json()["detail"]), r.json()
    assert lineage(client, job["id"])["autopilot"] is None


def test_manual_fork_records_its_outcome(client):
    root = client.post("/jobs", json=planted()).json()
    run_as_worker(root["id"], FLAT)
    r = client.post(f"/jobs/{root['id']}/fork", json={"apply": ["increase_learning_rate"], "patch": {"epochs": 8}})
    assert r.status_code == 202, r.text
    child = r.json()
    run_as_worker(child["id"], [0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5], lr=1e-5, ratio=1e-3)
    body = lineage(client, child["id"])
    assert body["autopilot"] is None and [s["job_id"] for s in body["steps"]] == [root["id"], child["id"]]
    step = body["steps"][1]
    assert step["cause"] == "learning_rate_too_low" and step["remedies"] == ["increase_learning_rate"]
    assert step["patch"] == {"optimizer": {"learning_rate": 1e-4}, "epochs": 8}
    assert step["gain"] == pytest.approx(0.5 - 0.1667, abs=1e-6)


def test_another_tenants_lineage_is_hidden(client):
    settings = Settings(auth_enabled=True)
    client.app.dependency_overrides[get_settings] = lambda: settings
    try:
        with session_scope() as s:
            a = {"Authorization": f"Bearer {create_key(session=s, tenant=f'a-{uuid.uuid4().hex[:6]}')}"}
            b = {"Authorization": f"Bearer {create_key(session=s, tenant=f'b-{uuid.uuid4().hex[:6]}')}"}
        root = client.post("/jobs", json={**planted(), "autopilot": AUTO}, headers=a).json()
        run_as_worker(root["id"], FLAT)
        assert client.get(f"/jobs/{root['id']}/lineage", headers=b).status_code == 404
        assert client.post(f"/jobs/{root['id']}/autopilot", json=AUTO, headers=b).status_code == 404
        assert lineage(client, root["id"], a)["autopilot"]["rounds_done"] == 1
        assert client.get("/remedies/outcomes", headers=b).json()["items"] == []
        assert client.get("/remedies/outcomes", headers=a).json()["items"][0]["count"] == 1
    finally:
        client.app.dependency_overrides.clear()


def test_state_lives_in_the_database_only():
    with session_scope() as s:
        active = s.exec(select(Autopilot).where(Autopilot.state == "active")).all()
        for ap in active:  # every decision is re-derived from rows: advancing again changes nothing
            before = (ap.rounds_done, ap.current_job_id)
            after = service.advance(s, ap.id)
            assert (after.rounds_done, after.current_job_id) == before or after.state == "ended"


def _diagnosis(*remedies: str, confidence: float = 0.8, verdict: str = "stagnating") -> Diagnosis:
    finding = Finding(
        rule="r",
        cause="c",
        confidence=confidence,
        summary="",
        remedies=[Remedy(id=r, text=r, patch={"x": i}) for i, r in enumerate(remedies)],
    )
    return Diagnosis(verdict=verdict, findings=[finding], summary="")


def test_next_step_decisions():
    config = AutopilotSpec(max_rounds=2, min_confidence=0.7)

    def step(**given):
        return next_step(config, **{"rounds_done": 1, "last_helped": True, "from_child": True, "tried": set(), **given})

    first = step(rounds_done=0, diagnosis=_diagnosis("a", "b"), tried={"a"})
    assert isinstance(first, Fork) and first.remedy.id == "b"
    assert step(rounds_done=2, diagnosis=_diagnosis("a")).reason == "max_rounds"
    low = step(rounds_done=0, diagnosis=_diagnosis("a", confidence=0.5))
    assert isinstance(low, End) and low.reason == "no_confident_cause"
    back = {"last_helped": False, "from_child": False}  # worse, or lower: the lineage went back to the parent
    assert step(**back, diagnosis=_diagnosis("a"), tried={"a"}).reason == "no_gain"
    healthy = Diagnosis(verdict="healthy", summary="fine")
    assert step(diagnosis=healthy).reason == "healthy"
    # a follow-up carries a remedy that helped further; one that went back to its parent is never carried further
    more = (Remedy(id="train_longer", patch={"epochs": 20}, text="t"), {"best_epoch": 9})
    carried = step(diagnosis=healthy, tried={"a"}, follow_up=more, last_cause="c")
    assert isinstance(carried, Fork) and (carried.remedy.id, carried.cause, carried.confidence) == (
        "train_longer",
        "c",
        None,
    )
    assert step(**back, diagnosis=healthy, tried={"a"}, follow_up=more).reason == "no_gain"
    # unclear without a lower best: carried further too, but not called healthy when nothing is left
    unclear = {"last_helped": False, "from_child": True}
    assert step(**unclear, diagnosis=healthy, tried={"a"}, follow_up=more, last_cause="c").remedy.id == "train_longer"
    assert step(**unclear, diagnosis=healthy, tried={"a"}).reason == "no_confident_cause"
    assert step(**unclear, diagnosis=_diagnosis("a", "b"), tried={"a"}, plateau=True).reason == "no_gain"
    # a confident cause with an untried remedy comes before a follow-up
    assert step(diagnosis=_diagnosis("a", "b"), tried={"a"}, follow_up=more).remedy.id == "b"


def test_dashboard_job_page_has_the_lineage_view(client):
    jid = str(uuid.uuid4())
    page = client.get(f"/ui/jobs/{jid}")
    assert page.status_code == 200 and 'id="lineage"' in page.text and "/ui/static/lineage.js?v=" in page.text
    script = client.get("/ui/static/lineage.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "/lineage" in script.text and "Charts.lineChart" in script.text
    assert "best_job_id" in script.text and "comparison" in script.text  # the job to keep, beyond-noise verdicts


def test_a_job_ended_through_the_lifecycle_advances_its_autopilot_with_no_call_of_its_own(client):
    """The autopilot is a subscriber of the after-transition hook: the worker's `finish` is all it takes."""
    from models import transitions
    from models.lifecycle import claim, finish
    from models.tables import JobStatus

    assert transitions.advance_autopilot in transitions.SUBSCRIBERS
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    jid = uuid.UUID(root["id"])
    with session_scope() as s:
        assert claim(s, jid, worker_host="w-hook", lease_seconds=60, max_attempts=3).job is not None
        for i, va in enumerate(FLAT, start=1):
            upsert_epoch(
                s,
                jid,
                {"epoch": i, "val_accuracy": va, "accuracy": 0.3, "learning_rate": 1e-6, "update_ratio_head": 1.2e-7},
            )
        assert finish(s, jid, JobStatus.succeeded, worker_host="w-hook")
    ap = lineage(client, root["id"])["autopilot"]
    assert ap["rounds_done"] == 1 and ap["current_job_id"] != root["id"]


def _set_validation(job_id, *, size: int, correct: list[bool] | None = None) -> None:
    """Class counts of a 2-class validation set of `size` images and, optionally, the best epoch's predictions."""
    jid = uuid.UUID(str(job_id))
    labels = [i % 2 for i in range(size)]
    values = {"class_counts": {"train": {"a": size, "b": size}, "val": {"a": size // 2, "b": size - size // 2}}}
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == jid).values(**values))
        if correct is not None:  # as the worker's sink writes them
            stored = predictions.encode(7, [y if ok else 1 - y for y, ok in zip(labels, correct)], labels)
            s.merge(ValPredictions(job_id=jid, epoch=7, stored=stored))
        s.commit()


def test_a_gain_within_the_noise_of_48_images_did_not_help(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    _set_validation(root["id"], size=48)
    run_as_worker(root["id"], [0.5] * 7)
    child = lineage(client, root["id"])["autopilot"]["current_job_id"]
    _set_validation(child, size=48)
    run_as_worker(child, [0.5, 0.5, 0.52, 0.54, 0.5625, 0.5625, 0.5625], lr=1e-4, ratio=2e-3)  # +3 images
    body = lineage(client, root["id"])
    step = body["steps"][1]
    assert step["gain"] == pytest.approx(0.0625) and step["gain"] > AUTO["min_gain"]  # the old rule: "helped"
    assert step["comparison"]["test"] == "newcombe_wilson" and step["comparison"]["direction"] == "unclear"
    assert step["comparison"]["gain_at_parent_budget"] == pytest.approx(0.0625)
    # not a proven fix, so not `healthy`; but no lower either, so the lineage went on from the child, whose
    # diagnosis has no confident cause left (its parent's would have ended it `no_gain`)
    assert body["autopilot"]["end_reason"] == "no_confident_cause", body["autopilot"]
    assert body["best_job_id"] == step["job_id"]  # still the best job to keep, even if not beyond noise


def test_a_gain_on_the_same_images_is_judged_image_by_image(client):
    root = client.post("/jobs", json={**planted(), "autopilot": {**AUTO, "max_rounds": 1}}).json()
    parent_right = [i < 24 for i in range(48)]
    _set_validation(root["id"], size=48, correct=parent_right)
    run_as_worker(root["id"], [0.5] * 7)
    child = lineage(client, root["id"])["autopilot"]["current_job_id"]
    # the child gets every image the parent got, and 7 more: the 7 disagreements all go one way
    _set_validation(child, size=48, correct=[i < 31 for i in range(48)])
    run_as_worker(child, [0.5, 0.55, 0.6, 0.625, 31 / 48, 31 / 48, 0.625], lr=1e-4, ratio=2e-3)
    body = lineage(client, root["id"])
    comparison = body["steps"][1]["comparison"]
    assert (comparison["test"], comparison["only_child_right"], comparison["only_parent_right"]) == (
        "mcnemar_exact",
        7,
        0,
    )
    assert comparison["direction"] == "better" and comparison["p_better"] == pytest.approx(0.5**7, rel=1e-3)
    # fixed in its only round: the lineage ends healthy (diagnosed before max_rounds), on the child
    assert body["autopilot"]["end_reason"] == "healthy" and body["best_job_id"] == child


def test_a_target_ends_the_lineage_on_the_job_that_reached_it(client):
    root = client.post("/jobs", json={**planted(), "autopilot": {**AUTO, "target": {"val_accuracy": 0.9}}}).json()
    run_as_worker(root["id"], FLAT)
    child = lineage(client, root["id"])["autopilot"]["current_job_id"]
    run_as_worker(child, RISING, lr=1e-4, ratio=1e-3)  # still climbing: would be carried further without a target
    body = lineage(client, root["id"])
    assert body["autopilot"]["end_reason"] == "target_reached" and "0.95" in body["autopilot"]["end_detail"]
    assert body["best_job_id"] == child and body["best"] == pytest.approx(0.95)


def test_the_workers_sink_keeps_one_row_of_predictions_a_job_the_latest_best(client):
    job = client.post("/jobs", json=planted()).json()
    sink = fenced_sink(uuid.UUID(job["id"]))
    sink.predictions(predictions.encode(2, [0, 1, 1], [0, 1, 0]))
    sink.predictions(predictions.encode(5, [0, 1, 0], [0, 1, 0]))  # a later, better epoch replaces it
    with session_scope() as s:
        rows = s.exec(select(ValPredictions).where(ValPredictions.job_id == uuid.UUID(job["id"]))).all()
        assert [r.epoch for r in rows] == [5] and predictions.correct(rows[0].stored)[0] == [True, True, True]


def fenced_sink(job_id: uuid.UUID):
    """The sink a worker writes through once it claimed the job (its writes carry that attempt)."""
    from models.lifecycle import Fence, claim
    from worker.db_sink import DbSink

    with session_scope() as s:
        taken = claim(s, job_id, worker_host="w-sink:1", lease_seconds=60, max_attempts=3)
    return DbSink(Fence(job_id, taken.job.attempts, "w-sink:1"))
