import copy

from analysis import apply_patch


def test_merges_objects_key_by_key():
    spec = {"optimizer": {"name": "adam", "learning_rate": 1e-3}, "epochs": 10}
    assert apply_patch(spec, {"optimizer": {"learning_rate": 1e-4}}) == {
        "optimizer": {"name": "adam", "learning_rate": 1e-4},
        "epochs": 10,
    }


def test_null_deletes_and_missing_key_is_fine():
    spec = {"optimizer": {"name": "sgd", "momentum": 0.9}}
    assert apply_patch(spec, {"optimizer": {"momentum": None}, "absent": None}) == {"optimizer": {"name": "sgd"}}


def test_arrays_and_scalars_replace():
    assert apply_patch({"a": [1, 2], "b": {"c": 1}}, {"a": [3], "b": 5}) == {"a": [3], "b": 5}


def test_object_into_null_or_scalar_target():
    spec = {"regularization": {"augmentation": None, "dropout": 0.2}}
    out = apply_patch(spec, {"regularization": {"augmentation": {"horizontal_flip": True, "x": None}}})
    assert out == {"regularization": {"augmentation": {"horizontal_flip": True}, "dropout": 0.2}}


def test_rfc7386_examples():
    assert apply_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert apply_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert apply_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert apply_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert apply_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert apply_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_pure_inputs_untouched_and_not_aliased():
    spec = {"model": {"trainable": "head"}, "keep": {"x": [1]}}
    patch = {"model": {"trainable": "mixed8"}, "new": {"y": [2]}}
    before_spec, before_patch = copy.deepcopy(spec), copy.deepcopy(patch)
    out = apply_patch(spec, patch)
    out["keep"]["x"].append(9)
    out["new"]["y"].append(9)
    assert spec == before_spec and patch == before_patch
