from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import flat, history

run = partial(builders.run, "overfitting")
ONLY_RATIO = {"val_rise_factor": 100.0}


def test_loss_ratio_fires_just_above_threshold():
    f = run(history(train_eval_loss=flat(1.0, 3), val_loss=flat(1.11, 3)))
    assert f.cause == "overfitting" and f.observed["signals"] == ["loss_ratio"]
    assert f.observed["loss_ratio"] == 0.11 and f.thresholds["ratio_threshold"] == 0.1
    assert f.observed["gap_biased"] is False


def test_loss_ratio_quiet_at_and_below_threshold():
    assert run(history(train_eval_loss=flat(1.0, 3), val_loss=flat(1.1, 3))) is None
    assert run(history(train_eval_loss=flat(1.0, 3), val_loss=flat(1.09, 3))) is None


def test_patience_counts_consecutive_latest_epochs():
    h = history(train_eval_loss=flat(1.0, 5), val_loss=[1.0, 1.0, 1.0, 1.2, 1.2])
    assert run(h, params={"patience": 3, **ONLY_RATIO}) is None
    h = history(train_eval_loss=flat(1.0, 5), val_loss=[1.0, 1.0, 1.2, 1.2, 1.2])
    f = run(h, params={"patience": 3, **ONLY_RATIO})
    assert f.epochs == [2, 3, 4] and f.observed["loss_ratio_streak"] == 3


def test_val_loss_rising_while_training_loss_falls():
    params = {"ratio_threshold": 10.0}
    h = history(train_eval_loss=[1.0, 0.9, 0.8, 0.7], val_loss=[1.0, 0.95, 0.96, 0.9975])
    f = run(h, params=params)
    assert f.observed["signals"] == ["val_loss_rising"] and f.observed["val_loss_min_epoch"] == 1
    assert run(history(train_eval_loss=[1.0, 0.9, 0.8, 0.7], val_loss=[1.0, 0.95, 0.96, 0.99]), params=params) is None
    # training loss no longer falling: not this signal
    assert run(history(train_eval_loss=[1.0, 0.9, 0.95, 0.95], val_loss=[1.0, 0.95, 0.96, 1.0]), params=params) is None


def test_accuracy_gap_autotrainer_thresholds():
    assert run(history(train_eval_accuracy=[0.8], val_accuracy=[0.7])).observed["signals"] == ["accuracy_gap"]
    assert run(history(train_eval_accuracy=[0.8], val_accuracy=[0.71])) is None
    # above 0.9 training accuracy the smaller 0.07 gap applies
    assert run(history(train_eval_accuracy=[0.95], val_accuracy=[0.88])).observed["accuracy_gap_limit"] == 0.07
    assert run(history(train_eval_accuracy=[0.95], val_accuracy=[0.89])) is None


def test_more_signals_more_confidence():
    one = run(history(train_eval_accuracy=[0.8, 0.85], val_accuracy=[0.7, 0.7]))
    h = history(train_eval_loss=[0.5, 0.3], val_loss=[0.6, 0.7], train_eval_accuracy=[0.8, 0.95], val_accuracy=[0.7, 0.7])
    three = run(h)
    assert len(three.observed["signals"]) == 3 and three.confidence > one.confidence


def test_falls_back_to_keras_loss_and_says_the_gap_is_biased():
    h = history(loss=flat(1.0, 3), val_loss=flat(1.3, 3))
    f = run(h)
    assert f.observed["gap_biased"] is True and f.observed["train_source"] == "loss"
    assert "biased" in f.summary
    honest = run(history(train_eval_loss=flat(1.0, 3), val_loss=flat(1.3, 3)))
    assert f.confidence < honest.confidence


def test_remedies_are_computed_from_the_spec():
    spec = {"regularization": {"dropout": 0.5, "l2": 1e-4, "augmentation": None}, "model": {"trainable": "all"}}
    f = run(history(train_eval_loss=flat(1.0, 3), val_loss=flat(1.5, 3)), spec)
    patches = {r.id: r.patch for r in f.remedies}
    assert list(patches)[0] == "add_augmentation"
    assert patches["increase_dropout"] == {"regularization": {"dropout": 0.6}}
    assert patches["add_l2"] == {"regularization": {"l2": 0.001}}
    assert patches["freeze_more_layers"] == {"model": {"trainable": "mixed8"}}


def test_abstains_without_validation_or_training_signals():
    a = run(history(val_loss=flat(1.0, 3)))
    assert isinstance(a, Abstention) and any("train" in m for m in a.missing)
    a = run(history(loss=flat(1.0, 3)))
    assert isinstance(a, Abstention) and {"val_loss", "val_accuracy"} <= set(a.missing)
