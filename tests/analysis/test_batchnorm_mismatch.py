from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import history

run = partial(builders.run, "batchnorm_mismatch")
ALL = {"model": {"trainable": "all", "batchnorm": "train"}}
RANDOM_ALL = {"model": {"weights": None, "trainable": "all"}}  # "auto" BatchNorm trains on a random-init base
TEN = {"class_counts_train": {c: 40 for c in "abcdefghij"}}
TWO = {"class_counts_train": {"a": 8, "b": 8}}


def collapse(**extra):
    return history(accuracy=[0.7, 0.85, 0.95], val_accuracy=[0.6, 0.52, 0.5], val_loss=[0.7, 0.6, 1e4], **extra)


def test_fires_after_unfreezing_when_validation_collapses():
    f = run(collapse(), ALL, **TWO)
    assert f.cause == "batchnorm_mismatch" and f.observed["val_loss_exploded"] and f.observed["val_accuracy_at_chance"]
    assert f.epochs == [2]
    assert [r.patch for r in f.remedies[:2]] == [
        {"model": {"batchnorm": "frozen"}},
        {"model": {"trainable": "mixed8"}, "optimizer": {"learning_rate": 1e-5}},
    ]


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


def gap(**extra):
    """A real unfrozen job with training BatchNorm: Keras accuracy climbs, the same model in inference mode
    stays low on the very images it fits, validation too, and val_loss never explodes."""
    return history(
        accuracy=[0.3, 0.6, 0.8, 0.92],
        train_eval_accuracy=[0.2, 0.24, 0.25, 0.26],
        val_accuracy=[0.2, 0.21, 0.22, 0.22],
        val_loss=[2.3, 2.5, 2.6, 2.8],
        **extra,
    )


def test_fires_on_training_mode_far_ahead_of_inference_mode():
    f = run(gap(), ALL, **TEN)
    assert f is not None and f.observed["train_eval_gap"] and not f.observed["val_loss_exploded"]
    assert not f.observed["val_accuracy_at_chance"] and f.observed["batchnorm"] == "train"
    assert f.confidence == 0.85 and f.epochs == [1, 2, 3]
    assert "scores 0.26 on training images it fits at 0.92" in f.summary


def test_auto_batchnorm_follows_the_weights():
    random_init = run(gap(), RANDOM_ALL, **TEN)
    assert random_init is not None and random_init.observed["batchnorm"] == "train"
    assert "freeze_batchnorm" not in [r.id for r in random_init.remedies]  # no pre-trained statistics to keep
    assert run(gap(), {"model": {"trainable": "all"}}, **TEN) is None  # ImageNet, "auto": frozen
    assert run(gap(), {"model": {"weights": "base.weights.h5", "trainable": "mixed7"}}, **TEN) is None


def test_quiet_when_batchnorm_is_frozen_whatever_the_history():
    frozen = {"model": {"weights": None, "trainable": "all", "batchnorm": "frozen"}}
    assert run(gap(), frozen, **TEN) is None
    assert run(collapse(train_eval_accuracy=[0.6, 0.5, 0.5]), frozen, **TWO) is None


def test_eval_gap_threshold():
    def at(train_eval):
        return run(
            history(accuracy=[0.5, 0.9], train_eval_accuracy=[0.5, train_eval], val_accuracy=[0.5, 0.5]), ALL, **TEN
        )

    assert at(0.6) is not None and at(0.61) is None
    # dropout and augmentation push Keras accuracy below inference mode: that gap is no mismatch
    assert (
        run(history(accuracy=[0.5, 0.6], train_eval_accuracy=[0.7, 0.95], val_accuracy=[0.6, 0.7]), ALL, **TEN) is None
    )
