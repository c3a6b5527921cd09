from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import history

run = partial(builders.run, "batchnorm_mismatch")
ALL = {"model": {"trainable": "all"}}
TWO = {"class_counts_train": {"a": 8, "b": 8}}


def collapse(**extra):
    return history(accuracy=[0.7, 0.85, 0.95], val_accuracy=[0.6, 0.52, 0.5], val_loss=[0.7, 0.6, 1e4], **extra)


def test_fires_after_unfreezing_when_validation_collapses():
    f = run(collapse(), ALL, **TWO)
    assert f.cause == "batchnorm_mismatch" and f.observed["val_loss_exploded"] and f.observed["val_accuracy_at_chance"]
    assert f.epochs == [2]
    assert f.remedies[0].patch == {"model": {"trainable": "mixed8"}, "optimizer": {"learning_rate": 1e-5}}


def test_inference_mode_collapse_on_training_data_is_strongest():
    plain = run(collapse(), ALL, **TWO)
    strong = run(collapse(train_eval_accuracy=[0.6, 0.5, 0.5]), ALL, **TWO)
    assert strong.confidence > plain.confidence and strong.observed["train_eval_at_chance"]


def test_quiet_with_a_frozen_base_or_healthy_validation_or_bad_training():
    assert run(collapse(), **TWO) is None
    assert run(history(accuracy=[0.7, 0.9], val_accuracy=[0.7, 0.85], val_loss=[0.7, 0.5]), ALL, **TWO) is None
    assert run(history(accuracy=[0.6, 0.65], val_accuracy=[0.5, 0.5], val_loss=[0.7, 1e4]), ALL, **TWO) is None


def test_val_loss_explosion_threshold():
    assert run(history(accuracy=[0.9, 0.9], val_loss=[1.0, 10.0]), ALL, **TWO).observed["val_loss_exploded"]
    assert run(history(accuracy=[0.9, 0.9], val_loss=[1.0, 9.9]), ALL, **TWO) is None


def test_chance_threshold():
    assert run(history(accuracy=[0.9, 0.9], val_accuracy=[0.6, 0.55]), ALL, **TWO) is not None
    assert run(history(accuracy=[0.9, 0.9], val_accuracy=[0.6, 0.56]), ALL, **TWO) is None


def test_abstains_without_validation():
    a = run(history(accuracy=[0.9, 0.9]), ALL)
    assert isinstance(a, Abstention) and a.missing == ["val_loss or val_accuracy"]
