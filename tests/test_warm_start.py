"""Warm starts (`model.init_from`): the API's checks (tenancy, checkpoint, head), the autopilot's warm/cold choice,
and one tiny real training that shows the child starts from the parent's weights."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from analysis import Remedy
from api.auth import create_key
from contract import predictions
from contract.autopilot import AutopilotSpec
from contract.spec import JobSpec
from models.autopilot.decide import Facts, decide
from models.checkpoints import BEST_WEIGHTS, checkpoint_file
from models.db import session_scope
from models.settings import Settings, get_settings
from models.tables import Job, ValPredictions
from tests.analysis.test_autopilot_decide import lr_too_low
from tests.specs import small_spec
from tests.test_autopilot_logic import AUTO, FLAT, lineage, planted, run_as_worker, weights_file  # noqa: F401


def with_checkpoint(job_id, *, dense_units: int = 32, classes: int = 3) -> None:
    """A job that ended with a best checkpoint on disk, as the worker leaves it (the file's content is not read
    by the checks), trained on `classes` classes."""
    path = checkpoint_file(get_settings().artifacts_dir, uuid.UUID(str(job_id)), "best")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    counts = {"train": {f"c{i}": 8 for i in range(classes)}, "val": {f"c{i}": 4 for i in range(classes)}}
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(str(job_id))).values(class_counts=counts))
        s.commit()


def warm(job_id, checkpoint="best", **model) -> dict:
    spec = small_spec()
    spec["model"] = {**spec["model"], **model, "init_from": {"job": str(job_id), "checkpoint": checkpoint}}
    return spec


def field_of(response) -> list:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


def test_a_warm_start_needs_a_job_of_this_tenant_with_that_checkpoint_and_the_same_head(client):
    source = client.post("/jobs", json=small_spec()).json()
    assert ["body", "model", "init_from", "checkpoint"] in field_of(client.post("/jobs", json=warm(source["id"])))
    with_checkpoint(source["id"])
    ok = client.post("/jobs", json=warm(source["id"]))
    assert ok.status_code == 202 and ok.json()["spec"]["model"]["init_from"] == {
        "job": source["id"],
        "checkpoint": "best",
    }
    assert ["body", "model", "init_from", "checkpoint"] in field_of(
        client.post("/jobs", json=warm(source["id"], "last"))
    )
    assert ["body", "model", "dense_units"] in field_of(client.post("/jobs", json=warm(source["id"], dense_units=64)))
    assert ["body", "model", "init_from", "job"] in field_of(client.post("/jobs", json=warm(uuid.uuid4())))
    two = client.post("/jobs", json=small_spec()).json()
    with_checkpoint(two["id"], classes=2)  # trained on 2 classes; shapes/train has 3
    assert ["body", "dataset", "train_dir"] in field_of(client.post("/jobs", json=warm(two["id"])))
    bad = warm(source["id"])
    bad["model"]["init_from"]["checkpoint"] = "first"
    assert ["body", "model", "init_from", "checkpoint"] in field_of(client.post("/jobs", json=bad))


def test_another_tenants_job_cannot_be_a_warm_start(client):
    settings = Settings(auth_enabled=True)
    client.app.dependency_overrides[get_settings] = lambda: settings
    try:
        with session_scope() as s:
            a = {"Authorization": f"Bearer {create_key(session=s, tenant=f'a-{uuid.uuid4().hex[:6]}')}"}
            b = {"Authorization": f"Bearer {create_key(session=s, tenant=f'b-{uuid.uuid4().hex[:6]}')}"}
        source = client.post("/jobs", json=small_spec(), headers=a).json()
        with_checkpoint(source["id"])
        assert client.post("/jobs", json=warm(source["id"]), headers=a).status_code == 202
        r = client.post("/jobs", json=warm(source["id"]), headers=b)
        assert ["body", "model", "init_from", "job"] in field_of(r) and "of this tenant" in r.text
    finally:
        client.app.dependency_overrides.clear()


RAISE = Remedy(id="increase_learning_rate", text="×100", patch={"optimizer": {"learning_rate": 1e-4}})


def facts(remedy: Remedy, **kw) -> Facts:
    base = dict(rounds_done=0, current=lr_too_low(remedy), base=lr_too_low(remedy), base_job_id="j", base_epochs=7)
    return Facts(**{**base, **kw})


def test_the_autopilot_starts_warm_only_where_the_remedy_keeps_the_model_and_the_data():
    config = AutopilotSpec()
    step = decide(config, facts(RAISE, base_checkpoints=frozenset({"best", "last"}), base_best_epoch=5))
    assert step.start == "warm" and step.remedy.patch == {
        "optimizer": {"learning_rate": 1e-4},
        "model": {"init_from": {"job": "j", "checkpoint": "best"}},
    }
    assert step.evidence["warm_start"] == {"from_job": "j", "checkpoint": "best", "epochs_saved": 5}
    assert decide(config, facts(RAISE)).start == "cold"  # no checkpoint on disk
    longer = Remedy(id="train_longer", text="more", patch={"epochs": 14})
    step = decide(config, facts(longer, base_checkpoints=frozenset({"best", "last"})))
    # from where the parent ended, for the 7 epochs still missing
    assert step.remedy.patch == {"epochs": 7, "model": {"init_from": {"job": "j", "checkpoint": "last"}}}
    assert step.evidence["warm_start"]["epochs_saved"] == 7
    augment = Remedy(id="add_augmentation", text="aug", patch={"regularization": {"augmentation": {"zoom_range": 0.1}}})
    step = decide(config, facts(augment, base_checkpoints=frozenset({"best"}), base_warm=True))
    assert step.start == "cold" and step.remedy.patch["model"] == {"init_from": None}  # not the base's warm start


def test_an_autopilot_round_starts_from_the_parents_best_checkpoint(client):
    root = client.post("/jobs", json={**planted(), "autopilot": AUTO}).json()
    with_checkpoint(root["id"])
    with session_scope() as s:
        stored = predictions.encode(4, [0] * 12, [0] * 12)
        s.merge(ValPredictions(job_id=uuid.UUID(root["id"]), epoch=4, stored=stored))
        s.commit()
    run_as_worker(root["id"], FLAT)
    body = lineage(client, root["id"])
    child = client.get(f"/jobs/{body['autopilot']['current_job_id']}").json()
    assert child["spec"]["model"]["init_from"] == {"job": root["id"], "checkpoint": "best"}
    step = body["steps"][1]
    assert (step["start"], step["epochs_saved"], body["epochs_saved"]) == ("warm", 4, 4)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from samples.shapes import generate

    root = tmp_path_factory.mktemp("warm-data")
    generate(root / "shapes", classes=3, train=8, val=4, size=80, seed=5)
    return root


def test_the_worker_loads_the_parents_weights_before_training(shapes, tmp_path):
    """A child at a learning rate too small to move anything ends with its parent's best weights, and scores its
    first epoch exactly as the parent's best."""
    import keras

    from worker.training.fit import train
    from worker.training.sink import MemorySink

    parent_id, child_id = uuid.uuid4(), uuid.uuid4()
    parent, child = MemorySink(), MemorySink()
    spec = JobSpec.model_validate(small_spec(epochs=2, optimizer={"learning_rate": 1e-2}))
    train(spec, data_root=shapes, workdir=tmp_path / str(parent_id), sink=parent, stop=threading.Event())
    assert (tmp_path / str(parent_id) / BEST_WEIGHTS).is_file()
    child_spec = small_spec(epochs=1, optimizer={"learning_rate": 1e-12})
    child_spec["model"] = {**child_spec["model"], "init_from": {"job": str(parent_id)}}
    result = train(
        JobSpec.model_validate(child_spec),
        data_root=shapes,
        workdir=tmp_path / str(child_id),
        sink=child,
        stop=threading.Event(),
    )
    assert result.status == "succeeded"
    assert [kind for kind, _, _ in child.events].count("warm_start") == 1
    best = max(parent.rows, key=lambda r: r["val_accuracy"])
    assert child.rows[0]["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)
    started = keras.saving.load_model(result.model_path)
    reference = keras.saving.load_model(result.model_path)
    reference.load_weights(tmp_path / str(parent_id) / BEST_WEIGHTS)
    for a, b in zip(started.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_fork_against_a_rate_too_high_starts_cold_from_the_spec_weights():
    """The parent's weights are the damage a rate too high did: lowering the rate on them would start from a
    wrecked head, so the child starts cold and its evidence says why; more epochs after a lowered rate go on warm."""
    from analysis import Diagnosis, Finding

    lower = Remedy(id="lower_learning_rate", text="÷64", patch={"optimizer": {"learning_rate": 1.5e-3}})
    finding = Finding(rule="r", cause="learning_rate_too_high", confidence=0.9, summary="", remedies=[lower])
    high = Diagnosis(verdict="stagnating", findings=[finding], summary="")
    on_disk = frozenset({"best", "last"})
    step = decide(AutopilotSpec(), facts(lower, current=high, base=high, base_checkpoints=on_disk, base_warm=True))
    assert step.start == "cold" and step.remedy.patch == {
        "optimizer": {"learning_rate": 1.5e-3},
        "model": {"init_from": None},
    }
    assert "rate too high" in step.evidence["cold_start"] and "warm_start" not in step.evidence
    # the same remedy against another cause keeps the parent's weights
    other = Finding(rule="r", cause="plateau", confidence=0.9, summary="", remedies=[lower])
    plateau = Diagnosis(verdict="stagnating", findings=[other], summary="")
    assert (
        decide(AutopilotSpec(), facts(lower, current=plateau, base=plateau, base_checkpoints=on_disk)).start == "warm"
    )
