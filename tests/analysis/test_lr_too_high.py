import math
from functools import partial

from analysis import Abstention, diagnose
from tests.analysis import builders
from tests.analysis.builders import ctx, flat, history

run = partial(builders.run, "lr_too_high")
NO_RISE = {"rise_factor": 1e9}


def test_non_finite_loss_diverges():
    for bad in (math.nan, math.inf):
        f = run(history(loss=[1.0, 0.9, bad], val_loss=[1.0, 0.9, 0.8]))
        assert f.diverging and "non_finite_loss" in f.observed["signals"]
        assert f.observed["first_non_finite_epoch"] == 2 and f.confidence >= 0.9
    d = diagnose(history(loss=[1.0, 0.9, math.nan]), ctx())
    assert d.verdict == "diverging"


def test_nonfinite_batches():
    assert run(history(loss=[1.0, 0.9], nonfinite_batches=[0, 1])).observed["first_non_finite_epoch"] == 1
    assert run(history(loss=[1.0, 0.9], nonfinite_batches=[0, 0])) is None


def test_explosion_at_autotrainer_threshold():
    f = run(history(loss=[1.0, 1e5]), params=NO_RISE)
    assert f.observed["signals"] == ["loss_exploded"] and f.diverging
    assert run(history(loss=[1.0, 9.9e4]), params=NO_RISE) is None
    val_only = run(history(val_loss=[1.0, 1e5]))
    assert val_only.observed["signals"] == ["val_loss_exploded"] and val_only.confidence < f.confidence


def test_training_loss_rising_far_above_its_minimum():
    f = run(history(loss=[1.0, 0.5, 0.4, 0.8]))
    assert f.observed["signals"] == ["training_loss_rising"] and f.epochs == [3]
    assert run(history(loss=[1.0, 0.5, 0.4, 0.79])) is None
    # near zero a doubling is noise, not divergence
    assert run(history(loss=[0.01, 0.002, 0.005])) is None


def test_oscillation_autotrainer_count():
    swinging = [0.5, 0.6, 0.5, 0.6, 0.5, 0.61, 0.62, 0.63, 0.64, 0.65]  # 2 swings in 10 epochs: 2 >= 0.2 × 10
    f = run(history(accuracy=swinging))
    assert f.observed["signals"] == ["oscillation_accuracy"] and f.observed["accuracy_swings"] == 2
    assert {r.id for r in f.remedies} >= {"lower_learning_rate", "add_reduce_lr_on_plateau", "increase_batch_size"}
    assert run(history(accuracy=swinging + [0.66])) is None  # 2 < 0.2 × 11


def test_oscillation_amplitude_threshold():
    assert run(history(val_accuracy=[0.5, 0.53] * 5)).observed["val_accuracy_swings"] == 4
    assert run(history(val_accuracy=[0.5, 0.529] * 5)) is None


def test_large_update_ratio():
    assert run(history(update_ratio_head=[0.01, 0.11])).observed["signals"] == ["large_update_ratio"]
    assert run(history(update_ratio_head=[0.01, 0.1])) is None


def test_remedy_lowers_the_current_learning_rate():
    f = run(history(loss=[1.0, math.nan]), {"optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}})
    assert f.remedies[0].patch == {"optimizer": {"learning_rate": 0.005}}
    assert f.remedies[1].patch == {"optimizer": {"name": "adam", "learning_rate": 0.001, "momentum": None}}


def test_abstains_without_any_signal():
    a = run(history(learning_rate=flat(1e-3, 4)))
    assert isinstance(a, Abstention) and a.missing
