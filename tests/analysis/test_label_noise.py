from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import flat, history

run = partial(builders.run, "label_noise")
UNFROZEN = {"model": {"trainable": "all"}}


def test_capped_inference_mode_accuracy_is_suspected():
    f = run(history(train_eval_accuracy=flat(0.8, 8), val_accuracy=flat(0.78, 8)), UNFROZEN)
    assert f.cause == "label_noise_suspected" and f.confidence <= 0.6
    assert f.observed["implied_noisy_fraction"] == 0.2
    assert f.remedies[0].id == "confirm_with_cleanlab" and "cleanlab" in f.summary


def test_quiet_at_the_cap_or_with_a_gap():
    assert run(history(train_eval_accuracy=flat(0.9, 8), val_accuracy=flat(0.89, 8)), UNFROZEN) is None
    assert run(history(train_eval_accuracy=flat(0.8, 8), val_accuracy=flat(0.6, 8)), UNFROZEN) is None


def test_frozen_base_weakens_the_suspicion():
    h = history(train_eval_accuracy=flat(0.8, 8), val_accuracy=flat(0.78, 8))
    assert run(h).confidence < run(h, UNFROZEN).confidence


def test_memorisation_after_a_cap():
    train = [0.5, 0.7] + [0.7] * 6 + [0.74, 0.78, 0.82, 0.86]
    val_loss = [1.0, 0.8, 0.78, 0.77, 0.77, 0.77, 0.78, 0.78, 0.8, 0.83, 0.86, 0.9]
    f = run(history(accuracy=train, val_accuracy=flat(0.68, 12), val_loss=val_loss), UNFROZEN)
    assert f.observed["capped_train_accuracy"] == 0.7 and f.observed["train_accuracy"] == 0.86
    assert "add_early_stopping" in [r.id for r in f.remedies]
    flat_val = [1.0, 0.8] + [0.78] * 10
    assert run(history(accuracy=train, val_accuracy=flat(0.68, 12), val_loss=flat_val), UNFROZEN) is None


def test_abstains_and_needs_enough_epochs():
    a = run(history(train_eval_accuracy=flat(0.8, 8)))
    assert isinstance(a, Abstention) and a.missing == ["val_accuracy"]
    assert run(history(train_eval_accuracy=flat(0.8, 4), val_accuracy=flat(0.8, 4))).reason.startswith(
        "insufficient data"
    )


def test_a_cap_at_chance_is_not_label_noise():
    h = history(train_eval_accuracy=flat(0.37, 8), val_accuracy=flat(0.35, 8))
    assert run(h, UNFROZEN, class_counts_train={"a": 8, "b": 8, "c": 8}) is None
    h = history(train_eval_accuracy=flat(0.6, 8), val_accuracy=flat(0.58, 8))
    assert run(h, UNFROZEN, class_counts_train={"a": 8, "b": 8, "c": 8}) is not None


def test_validation_beating_inference_mode_training_is_suspected():
    # the model gets clean validation labels right and contradicts half the training labels: on average over the
    # latest three epochs validation is 0.1 above inference-mode training, though the last epoch alone is not
    train_eval = [0.47, 0.45, 0.5, 0.5, 0.5, 0.5]
    f = run(history(train_eval_accuracy=train_eval, val_accuracy=[0.84, 0.73, 0.84, 0.65, 0.6, 0.55]))
    assert f.cause == "label_noise_suspected" and f.observed["val_minus_train_accuracy"] == 0.1
    assert f.epochs == [3, 4, 5]


def test_validation_just_below_the_margin_is_quiet():
    train_eval = [0.47, 0.45, 0.5, 0.5, 0.5, 0.5]
    assert run(history(train_eval_accuracy=train_eval, val_accuracy=[0.84, 0.73, 0.84, 0.65, 0.6, 0.54])) is None
    # one noisy epoch far above does not make it
    assert run(history(train_eval_accuracy=train_eval, val_accuracy=[0.84, 0.73, 0.84, 0.5, 0.75, 0.5])) is None


def test_no_suspicion_when_nothing_was_learned():
    # validation at chance: a model that agrees with no labels says nothing about the training labels
    h = history(
        train_eval_accuracy=flat(0.25, 8),
        val_accuracy=flat(0.25, 8),
        train_eval_loss=flat(1.55, 8),
        val_loss=flat(1.35, 8),
    )
    assert run(h, UNFROZEN, class_counts_train={"a": 30, "b": 30, "c": 30, "d": 30}) is None
