from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import flat, history, ramp

run = partial(builders.run, "overfitting")
N = 6


def rising_val_loss(train_acc: float = 0.92, last_val_loss: float = 0.6, train_loss: list | None = None) -> list:
    """Validation accuracy best at epoch 1 and flat after; val_loss lowest at epoch 1, then rising."""
    return history(
        train_eval_accuracy=flat(train_acc, N),
        val_accuracy=[0.65] + flat(0.7, N - 1),
        train_eval_loss=train_loss or ramp(0.6, -0.05, N),
        val_loss=[0.6, 0.5, 0.52, 0.54, 0.56, last_val_loss],
    )


def widening_gap(last_val: float = 0.74) -> list:
    """Validation accuracy best at epoch 2 while training accuracy keeps climbing; val_loss flat."""
    return history(
        train_eval_accuracy=[0.8, 0.85, 0.9, 0.95, 0.97, 0.98],
        val_accuracy=[0.7, 0.75, 0.76, 0.75, 0.74, last_val],
        val_loss=flat(0.6, N),
    )


def test_val_loss_rising_while_training_loss_falls():
    f = run(rising_val_loss())
    assert f.cause == "overfitting" and f.observed["signals"] == ["val_loss_rising"]
    assert f.observed["val_loss_min_epoch"] == 1 and f.observed["val_loss_last"] == 0.6
    assert f.epochs == [1, 2, 3, 4, 5]


def test_val_loss_rise_needs_both_the_factor_and_the_absolute_rise():
    assert run(rising_val_loss(last_val_loss=0.549)) is None  # below 1.1 × 0.5
    tiny = history(
        train_eval_accuracy=flat(0.92, N),
        val_accuracy=[0.75] + flat(0.8, N - 1),
        train_eval_loss=ramp(0.2, -0.01, N),
        val_loss=[0.12, 0.1, 0.11, 0.12, 0.13, 0.14],
    )
    assert run(tiny) is None  # 1.4 × its minimum but only 0.04 above it


def test_val_loss_rise_needs_the_training_loss_to_have_fallen():
    assert run(rising_val_loss(train_loss=[0.6, 0.5, 0.5, 0.52, 0.55, 0.6])) is None


def test_gap_widening_since_the_best_validation_accuracy():
    f = run(widening_gap())
    assert f.observed["signals"] == ["gap_widening"]
    assert f.observed["best_val_accuracy_epoch"] == 2 and f.observed["gap_at_best_val_accuracy"] == 0.14
    assert f.observed["accuracy_gap"] == 0.24 and f.epochs == [2, 3, 4, 5]
    # the gap grew by only 0.04 since the best epoch
    h = history(
        train_eval_accuracy=[0.8, 0.85, 0.9, 0.92, 0.93, 0.93],
        val_accuracy=[0.7, 0.75, 0.76, 0.75, 0.75, 0.75],
        val_loss=flat(0.6, N),
    )
    assert run(h) is None


def test_no_finding_below_the_minimum_accuracy_gap():
    assert run(rising_val_loss(train_acc=0.89)) is None  # gap 0.19 < min_gap 0.2, although val_loss rises
    assert run(rising_val_loss(train_acc=0.9)).observed["accuracy_gap"] == 0.2


def test_still_improving_validation_is_not_overfitting():
    # the regression: train-eval 0.865 vs val 0.80 and climbing, val_loss 0.54; the loss ratio is large
    n = 8
    h = history(
        train_eval_accuracy=ramp(0.55, 0.045, n),
        val_accuracy=ramp(0.52, 0.04, n),
        train_eval_loss=ramp(0.9, -0.08, n),
        val_loss=[1.0, 0.9, 0.8, 0.7, 0.62, 0.56, 0.53, 0.54],
    )
    assert h[-1].train_eval_accuracy == 0.865 and h[-1].val_accuracy == 0.8
    assert run(h) is None
    # a widening gap, but the best validation accuracy is recent and val_loss is near its best: cleared
    h = history(
        train_eval_accuracy=[0.8, 0.84, 0.86, 0.88, 0.9, 0.99],
        val_accuracy=[0.6, 0.62, 0.6, 0.61, 0.66, 0.64],
        train_eval_loss=ramp(0.5, -0.05, N),
        val_loss=[0.9, 0.8, 0.85, 0.84, 0.86, 0.85],
    )
    assert run(h) is None
    assert run(h, params={"recent": 1}).observed["signals"] == ["gap_widening"]


def test_a_new_best_accuracy_with_a_risen_val_loss_is_not_improvement():
    h = history(
        train_eval_accuracy=flat(0.99, N),
        val_accuracy=[0.6, 0.62, 0.6, 0.61, 0.6, 0.65],
        train_eval_loss=ramp(0.5, -0.05, N),
        val_loss=[0.9, 0.8, 0.85, 0.9, 0.95, 1.0],
    )
    f = run(h)
    assert f.observed["signals"] == ["val_loss_rising"] and f.observed["val_loss_min_epoch"] == 1


def test_the_sagemaker_ratio_is_only_reported():
    # val_loss 3× the training loss throughout, but nothing worsens: no finding
    h = history(
        train_eval_accuracy=flat(0.95, N),
        val_accuracy=flat(0.8, N),
        train_eval_loss=flat(0.2, N),
        val_loss=flat(0.6, N),
    )
    assert run(h) is None
    f = run(rising_val_loss())
    assert f.observed["loss_ratio"] == round((0.6 - 0.35) / 0.35, 4)
    assert "loss_ratio" not in f.observed["signals"]
    assert f.thresholds["ratio_threshold"] == 0.1


def test_two_signals_are_more_confident_than_one():
    both = history(
        train_eval_accuracy=[0.8, 0.85, 0.9, 0.95, 0.97, 0.98],
        val_accuracy=[0.7, 0.75, 0.76, 0.75, 0.74, 0.74],
        train_eval_loss=ramp(0.6, -0.05, N),
        val_loss=[0.6, 0.5, 0.52, 0.54, 0.56, 0.6],
    )
    f = run(both)
    assert f.observed["signals"] == ["val_loss_rising", "gap_widening"]
    assert f.confidence > run(widening_gap()).confidence
    assert f.confidence > run(rising_val_loss(train_acc=0.95)).confidence


def test_falls_back_to_keras_accuracy_and_says_the_gap_is_biased():
    h = widening_gap()
    keras = history(
        accuracy=[r.train_eval_accuracy for r in h], val_accuracy=[r.val_accuracy for r in h], val_loss=flat(0.6, N)
    )
    f = run(keras)
    assert f.observed["gap_biased"] is True and f.observed["train_source"] == "accuracy"
    assert "biased" in f.summary
    honest = run(h)
    assert honest.observed["gap_biased"] is False and f.confidence < honest.confidence


def test_remedies_are_computed_from_the_spec():
    spec = {"regularization": {"dropout": 0.5, "l2": 1e-4, "augmentation": None}, "model": {"trainable": "all"}}
    f = run(rising_val_loss(), spec)
    patches = {r.id: r.patch for r in f.remedies}
    assert list(patches)[:3] == ["add_augmentation", "increase_dropout", "freeze_more_layers"]
    assert patches["increase_dropout"] == {"regularization": {"dropout": 0.6}}
    assert patches["freeze_more_layers"] == {"model": {"trainable": "mixed8"}}
    assert patches["add_l2"] == {"regularization": {"l2": 0.001}}
    assert "add_early_stopping" in patches


def test_abstains_without_validation_or_training_accuracy():
    a = run(history(train_eval_accuracy=flat(0.9, N), val_loss=flat(1.0, N)))
    assert isinstance(a, Abstention) and a.missing == ["val_accuracy"]
    a = run(history(val_accuracy=flat(0.8, N), loss=flat(1.0, N)))
    assert isinstance(a, Abstention) and a.missing == ["train_eval_accuracy or accuracy"]
    a = run(rising_val_loss()[:3])
    assert a.reason == "insufficient data: needs 4 epochs, have 3"


def test_a_frozen_base_head_at_the_linear_probes_accuracy_is_at_its_features_limit():
    """A head on a frozen base whose best validation accuracy (0.76 of 40 images) is not below a linear probe of the
    same features (out of sample, 0.72) generalises as far as those features allow: its gap is not overfitting. A
    probe clearly above the head leaves the finding; an unfrozen base is not judged by a frozen-feature probe."""
    val = {"class_counts_val": {"a": 20, "b": 20}, "class_counts_train": {"a": 100, "b": 100}}
    at_ceiling = {"linear_probe": {"accuracy": 0.72, "images": 200}}
    assert run(widening_gap(), spec={"model": {"trainable": "head"}}, probes=at_ceiling, **val) is None
    above = {"linear_probe": {"accuracy": 0.95, "images": 200}}
    assert run(widening_gap(), spec={"model": {"trainable": "head"}}, probes=above, **val).cause == "overfitting"
    unfrozen = {"model": {"trainable": "all"}, "optimizer": {"learning_rate": 1e-5}}
    assert run(widening_gap(), spec=unfrozen, probes=at_ceiling, **val).cause == "overfitting"
