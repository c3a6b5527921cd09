"""Hostile input gets a 422 naming the field (404 for an artifact), never a 500, on PostgreSQL and on SQLite.

Bodies are sent as raw text where Python's JSON writer would not produce them itself (`NaN`, `\\ud800`),
exactly as a client in another language could.
"""

from __future__ import annotations

import json
import os
import random
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from contract.spec import JobSpec
from samples.shapes import generate
from tests.specs import small_spec
from tests.sqlite_app import sqlite_client
from worker.training.errors import DataError
from worker.training.sink import MemorySink


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def api(request, client, tmp_path_factory):
    if request.param == "postgresql":
        yield client
        return
    with sqlite_client(tmp_path_factory.mktemp("sqlite")) as c:
        yield c


def post(api, path: str, body_text: str, **headers):
    return api.post(path, content=body_text.encode(), headers={"content-type": "application/json", **headers})


def strict_json(response) -> dict:
    """The body, refusing NaN/Infinity: what a strict client (JavaScript, Go) would parse."""

    def refuse(constant):
        raise AssertionError(f"response holds {constant}")

    return json.loads(response.content.decode("utf-8"), parse_constant=refuse)


def refused(response, loc: tuple) -> list[dict]:
    assert response.status_code == 422, response.text
    detail = strict_json(response)["detail"]
    assert any(tuple(e["loc"][: len(loc) + 1]) == ("body", *loc) for e in detail), detail
    return detail


def with_(spec: dict, path: tuple, value) -> dict:
    spec = json.loads(json.dumps(spec))
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return spec


def cancel(api, response) -> None:
    api.post(f"/jobs/{response.json()['id']}/cancel")


@pytest.fixture(scope="module")
def queued(api) -> str:
    r = api.post("/jobs", json=small_spec(name="to-fork"))
    assert r.status_code == 202, r.text
    yield r.json()["id"]
    api.post(f"/jobs/{r.json()['id']}/cancel")


# --- numbers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "literal"),
    [
        (("optimizer", "learning_rate"), "NaN"),
        (("callbacks", "reduce_lr_on_plateau", "min_delta"), "Infinity"),
        (("callbacks", "early_stopping", "min_delta"), "Infinity"),
        (("regularization", "l2"), "-Infinity"),
        (("dataset", "image_size"), "NaN"),
    ],
)
def test_non_finite_numbers_are_422_naming_the_field(api, path, literal):
    text = json.dumps(with_(small_spec(), path, "@@")).replace('"@@"', literal)
    detail = refused(post(api, "/jobs", text), path)
    assert any("finite" in e["msg"] for e in detail), detail


def test_a_422_never_echoes_what_json_cannot_hold():
    from api.errors import _error_items

    items = _error_items(
        [
            {
                "loc": ["body", "x"],
                "msg": "bad",
                "type": "t",
                "input": {"a": float("nan"), "b": "\ud800", "c": "x" * 10_000, "d": [[[[[[[[[[1]]]]]]]]]]},
                "ctx": {"error": ValueError("inf")},
            }
        ]
    )
    text = json.dumps(items, allow_nan=False)  # raises on NaN
    text.encode("utf-8")  # raises on a lone surrogate
    assert len(text) < 2_000 and items[0]["input"]["a"] == "nan" and items[0]["ctx"] == {"error": "inf"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("seed",), -1),
        (("seed",), 2**32),
        (("dataset", "seed"), -1),
        (("dataset", "seed"), 2**40),
    ],
)
def test_seeds_outside_numpy_range_are_422(api, path, value):
    refused(api.post("/jobs", json=with_(small_spec(), path, value)), path)


def test_the_largest_seed_is_accepted(api):
    r = api.post("/jobs", json=with_(with_(small_spec(), ("seed",), 2**32 - 1), ("dataset", "seed"), 0))
    assert r.status_code == 202, r.text
    cancel(api, r)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("epochs",), True),
        (("dataset", "image_size"), "299"),
        (("batch_size",), 8.0),
        (("optimizer", "learning_rate"), "0.001"),
        (("optimizer", "learning_rate"), True),
        (("regularization", "l2_base"), 1),
        (("performance", "jit_compile"), "false"),
        (("model", "trainable"), True),
    ],
)
def test_numbers_and_booleans_are_strict(api, path, value):
    refused(api.post("/jobs", json=with_(small_spec(), path, value)), path)


def test_a_json_integer_still_fills_a_float_field(api):
    spec = with_(small_spec(), ("optimizer", "learning_rate"), 1)
    spec["regularization"] = {"l2": 0, "dropout": 0}
    r = api.post("/jobs", json=spec)
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["optimizer"]["learning_rate"] == 1.0
    cancel(api, r)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adamw"])
def test_every_optimizer_takes_weight_decay(optimizer):
    spec = JobSpec.model_validate(with_(small_spec(), ("optimizer",), {"name": optimizer, "weight_decay": 0.01}))
    assert spec.optimizer.weight_decay == 0.01


# --- strings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "escaped", "words"),
    [
        (("name",), "\\ud800", "surrogate"),
        (("name",), "ok\\udfffok", "surrogate"),
        (("name",), "a\\u0000b", "NUL"),
        (("dataset", "train_dir"), "shapes\\u0000/train", "NUL"),
        (("on_stagnation", "rules", 0), "\\ud83d", "surrogate"),
    ],
)
def test_lone_surrogates_and_nuls_are_422_naming_the_field(api, path, escaped, words):
    spec = small_spec()
    if path[0] == "on_stagnation":
        spec["on_stagnation"] = {"action": "stop", "rules": ["@@"]}
    else:
        spec = with_(spec, path, "@@")
    detail = refused(post(api, "/jobs", json.dumps(spec).replace("@@", escaped)), path)
    assert any(words in e["msg"] for e in detail), detail


def test_a_bad_key_is_422_at_its_parent(api):
    text = json.dumps(small_spec()).replace('"name"', '"na\\ud800me"', 1)
    refused(post(api, "/jobs", text), ())


def test_a_valid_pair_of_surrogates_is_a_normal_character(api):
    r = post(api, "/jobs", json.dumps(small_spec()).replace('"shapes"', '"shapes \\ud83d\\ude00"', 1))
    assert r.status_code == 202, r.text
    assert r.json()["name"] == "shapes \U0001f600"
    cancel(api, r)


@pytest.mark.parametrize("path", [("dataset", "train_dir"), ("dataset", "val_dir"), ("model", "weights")])
def test_a_path_part_longer_than_any_file_system_allows_is_422(api, path):
    value = "x" * 300 + (".h5" if path[0] == "model" else "")
    detail = refused(api.post("/jobs", json=with_(small_spec(), path, value)), path)
    assert any("longer than 255 bytes" in e["msg"] for e in detail), detail
    detail = refused(api.post("/jobs", json=with_(small_spec(), path, "shapes/" + value)), path)
    assert all(len(e["msg"]) < 400 for e in detail)  # the path is quoted cut, not whole


def test_a_whole_path_longer_than_the_system_allows_is_422(api):
    refused(
        api.post("/jobs", json=with_(small_spec(), ("dataset", "train_dir"), "/".join(["y" * 200] * 25))),
        ("dataset", "train_dir"),
    )


def test_an_artifact_name_of_300_characters_is_404(api, queued):
    for name in ("a" * 300, "tensorboard/" + "b" * 300, "/".join(["c" * 200] * 25)):
        r = api.get(f"/jobs/{queued}/artifacts/{name}")
        assert r.status_code == 404, r.text
        assert len(r.json()["detail"]) < 300


# --- nesting, the fork patch, other bodies --------------------------------------------------------------------


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_600_deep_fork_patch_is_422_naming_patch(api, queued):
    detail = refused(api.post(f"/jobs/{queued}/fork", json={"patch": deep(600)}), ("patch",))
    assert "nested deeper than 32 levels" in detail[0]["msg"]
    r = api.post(f"/jobs/{queued}/fork", json={"patch": {"name": deep(20)}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "spec", "name"]  # depth is fine


def test_a_deep_spec_field_is_422_naming_it(api):
    refused(api.post("/jobs", json={**small_spec(), "name": deep(100)}), ("name",))


@pytest.mark.parametrize(
    ("literal", "loc"),
    [
        ('{"patch": {"optimizer": {"learning_rate": NaN}}}', ("patch", "optimizer", "learning_rate")),
        (
            '{"patch": {"callbacks": {"early_stopping": {"min_delta": Infinity}}}}',
            ("patch", "callbacks", "early_stopping", "min_delta"),
        ),
        ('{"patch": {"name": "\\ud800"}}', ("patch", "name")),
        ('{"patch": {"name": "a\\u0000"}}', ("patch", "name")),
        ('{"apply": ["\\udc00"]}', ("apply", 0)),
    ],
)
def test_the_fork_patch_refuses_what_the_spec_refuses(api, queued, literal, loc):
    refused(post(api, f"/jobs/{queued}/fork", literal), loc)


def test_a_forked_seed_out_of_range_is_422(api, queued):
    r = api.post(f"/jobs/{queued}/fork", json={"patch": {"seed": -1}})
    assert r.status_code == 422 and ["body", "spec", "seed"] in [e["loc"] for e in r.json()["detail"]], r.text


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', "\x00"])
def test_analysis_overrides_never_500(api, queued, value):
    r = api.get(f"/jobs/{queued}/analysis", params={"overfitting.ratio_threshold": value})
    assert r.status_code in (200, 422), r.text
    strict_json(r)


# --- spec checks at submit ------------------------------------------------------------------------------------


def test_unknown_stagnation_rule_is_422_listing_the_known_ones(api):
    from analysis.rules import RULES

    spec = {**small_spec(), "on_stagnation": {"action": "stop", "rules": ["overfitting", "no_such_rule"]}}
    detail = refused(api.post("/jobs", json=spec), ("on_stagnation", "rules"))
    msg = next(e["msg"] for e in detail if e["loc"] == ["body", "on_stagnation", "rules"])
    assert "no_such_rule" in msg and all(rule in msg for rule in RULES)
    ok = api.post("/jobs", json={**spec, "on_stagnation": {"action": "stop", "rules": sorted(RULES)}})
    assert ok.status_code == 202, ok.text
    cancel(api, ok)


def test_an_empty_idempotency_key_counts_as_none(api):
    first = api.post("/jobs", json=small_spec(), headers={"Idempotency-Key": ""})
    second = api.post("/jobs", json=small_spec(epochs=4), headers={"Idempotency-Key": ""})
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["id"] != second.json()["id"]
    for r in (first, second):
        cancel(api, r)


# --- the data a worker reads ----------------------------------------------------------------------------------


def train_on(root: Path, **dataset):
    from worker.training.fit import train

    spec = JobSpec.model_validate(small_spec(dataset={"image_size": 75, **dataset}))
    train(spec, data_root=root, workdir=root / "w", sink=MemorySink(), stop=threading.Event())


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the data root holding a file the job must never list or read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "adduser.conf").write_text("secret")
    Image.new("RGB", (80, 80)).save(folder / "fine.png")
    return folder


def test_a_class_folder_linked_outside_the_data_root_fails_naming_it(tmp_path, outside):
    root = tmp_path / "root"
    generate(root / "set", classes=2, train=3, val=2, size=80)
    os.symlink(outside, root / "set" / "train" / "zzz")
    os.symlink(outside, root / "set" / "val" / "zzz")
    with pytest.raises(DataError) as err:
        train_on(root, train_dir="set/train", val_dir="set/val")
    assert "class folder 'zzz' is a symlink leading outside the data root" in str(err.value)
    assert "adduser" not in str(err.value) and "outside/" not in str(err.value)


def test_an_image_linked_outside_the_data_root_fails_naming_it(tmp_path, outside):
    root = tmp_path / "root"
    generate(root / "set", classes=2, train=3, val=2, size=80)
    os.symlink(outside / "fine.png", root / "set" / "val" / "circle" / "zz.png")
    with pytest.raises(DataError, match="val_dir file circle/zz.png is a symlink leading outside the data root"):
        train_on(root, train_dir="set/train", val_dir="set/val")


def test_links_that_stay_inside_the_data_root_are_followed(tmp_path):
    from worker.training.scan import scan

    root = tmp_path / "root"
    generate(root / "set", classes=2, train=3, val=2, size=80)
    generate(root / "more", classes=2, train=2, val=1, size=80)
    os.symlink(root / "more" / "train" / "circle", root / "set" / "train" / "extra")
    images = scan(root / "set" / "train", field_name="train_dir", root=root)
    assert images.counts()["extra"] == 2
    with pytest.raises(DataError, match="leading outside train_dir"):  # without the data root, train_dir bounds it
        scan(root / "set" / "train", field_name="train_dir")


def garbage_png(path: Path, size: int = 80) -> None:
    """A PNG whose chunks and checksums are all valid but whose pixel data is random bytes."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 10, 10)).save(buf, "PNG")
    data, out, pos = buf.getvalue(), [], 8
    rng = random.Random(1)
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IDAT":
            body = zlib.compress(bytes(rng.randrange(256) for _ in range(size * (1 + size * 3))))
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
        pos += 12 + n
    path.write_bytes(data[:8] + b"".join(out))


def test_a_png_with_garbage_pixels_fails_naming_the_file(tmp_path):
    import tensorflow as tf

    root = tmp_path / "root"
    generate(root / "set", classes=2, train=3, val=2, size=80)
    bad = root / "set" / "train" / "square" / "garbage.png"
    garbage_png(bad)
    with Image.open(bad) as img:
        img.verify()  # the header check alone passes it
    with pytest.raises(tf.errors.InvalidArgumentError):  # and the pipeline's decoder would fail on it, unnamed
        tf.io.decode_image(tf.io.read_file(str(bad)), channels=3)
    with pytest.raises(DataError, match=r"file square/garbage\.png is not an image \(TensorFlow cannot decode it"):
        train_on(root, train_dir="set/train", val_dir="set/val")
