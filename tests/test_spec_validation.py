"""Bad specs get 422 naming every bad field; paths never leave the data root."""

from __future__ import annotations

import os

import pytest

from tests.specs import small_spec


def errors_for(client, spec: dict) -> list[dict]:
    r = client.post("/jobs", json=spec)
    assert r.status_code == 422, r.text
    return r.json()["detail"]


def locs(errors: list[dict]) -> set[tuple]:
    return {tuple(e["loc"]) for e in errors}


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        (
            {"dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 60}},
            ("dataset", "image_size"),
        ),
        (
            {"dataset": {"train_dir": "shapes/train", "val_dir": "shapes/val", "image_size": 600}},
            ("dataset", "image_size"),
        ),
        ({"dataset": {"train_dir": "shapes/train", "validation_split": 1.5}}, ("dataset", "validation_split")),
        ({"batch_size": 0}, ("batch_size",)),
        ({"epochs": 0}, ("epochs",)),
        ({"class_weight": "sometimes"}, ("class_weight",)),
        ({"regularization": {"dropout": 1.0}}, ("regularization", "dropout")),
        ({"regularization": {"l2": -0.1}}, ("regularization", "l2")),
        (
            {"regularization": {"augmentation": {"fill_mode": "mirror"}}},
            ("regularization", "augmentation", "fill_mode"),
        ),
        ({"regularization": {"label_smoothing": 1.0}}, ("regularization", "label_smoothing")),
        ({"optimizer": {"name": "adagrad"}}, ("optimizer", "name")),
        ({"optimizer": {"learning_rate": 0}}, ("optimizer", "learning_rate")),
        ({"callbacks": {"early_stopping": {"monitor": "val_f1"}}}, ("callbacks", "early_stopping", "monitor")),
        ({"callbacks": {"reduce_lr_on_plateau": {"factor": 1.5}}}, ("callbacks", "reduce_lr_on_plateau", "factor")),
        ({"model": {"trainable": "mixed11"}}, ("model", "trainable")),
        ({"model": {"weights": "base.bin"}}, ("model", "weights")),
        ({"surprise": 1}, ("surprise",)),
    ],
)
def test_bad_field_names_itself(client, patch, loc):
    errors = errors_for(client, {**small_spec(), **patch})
    assert any(tuple(e["loc"][1 : len(loc) + 1]) == loc for e in errors), errors
    assert all(e["msg"] for e in errors)


def test_every_bad_field_is_listed(client):
    errors = errors_for(client, {**small_spec(), "batch_size": -1, "epochs": 0, "class_weight": "x"})
    assert {("body", "batch_size"), ("body", "epochs"), ("body", "class_weight")} <= locs(errors)


def test_validation_source_is_exactly_one(client):
    both = {"train_dir": "shapes/train", "val_dir": "shapes/val", "validation_split": 0.2}
    neither = {"train_dir": "shapes/train"}
    for ds in (both, neither):
        errors = errors_for(client, {**small_spec(), "dataset": ds})
        assert any("exactly one of val_dir or validation_split" in e["msg"] for e in errors)


def test_momentum_only_for_sgd_and_rmsprop(client):
    errors = errors_for(client, {**small_spec(), "optimizer": {"name": "adam", "momentum": 0.9}})
    assert any("momentum" in e["msg"] for e in errors)


def test_epochs_above_service_limit(client):
    errors = errors_for(client, {**small_spec(), "epochs": 5000})
    assert ("body", "epochs") in locs(errors) and "limit" in errors[0]["msg"]


@pytest.mark.parametrize(
    "path",
    [
        "../etc",
        "shapes/../../etc",
        "/etc/passwd",
        "%2e%2e/etc",
        "shapes/%2E%2E/%2e%2e/etc",
        "..\\..\\windows",
        "C:/windows",
        "shapes/train/../../../../tmp",
    ],
)
def test_path_escapes_are_refused(client, path):
    spec = small_spec()
    spec["dataset"]["train_dir"] = path
    errors = errors_for(client, spec)
    assert ("body", "dataset", "train_dir") in locs(errors), errors


def test_symlink_out_of_data_root_is_refused(client, data_root, tmp_path):
    outside = tmp_path / "outside"
    (outside / "a").mkdir(parents=True)
    link = data_root / "escape"
    if not link.exists():
        os.symlink(outside, link)
    spec = small_spec()
    spec["dataset"]["train_dir"] = "escape"
    errors = errors_for(client, spec)
    assert any("outside the data root" in e["msg"] for e in errors)


def test_weights_path_escape_and_missing(client):
    errors = errors_for(client, {**small_spec(), "model": {"weights": "../base.weights.h5"}})
    assert ("body", "model", "weights") in locs(errors)
    errors = errors_for(client, {**small_spec(), "model": {"weights": "nowhere/base.weights.h5"}})
    assert any("does not exist" in e["msg"] for e in errors)


def test_missing_dataset_dir(client):
    spec = small_spec()
    spec["dataset"]["val_dir"] = "shapes/nope"
    errors = errors_for(client, spec)
    assert ("body", "dataset", "val_dir") in locs(errors)


def test_malformed_json_is_422_not_500(client):
    r = client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
