import math
from functools import partial

from analysis import Abstention, diagnose
from tests.analysis import builders
from tests.analysis.builders import ctx, flat, history, ramp

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
    assert "val_loss_exploded" in val_only.observed["signals"] and val_only.confidence < f.confidence


def test_training_loss_rising_far_above_its_minimum():
    f = run(history(loss=[1.0, 0.5, 0.4, 0.8]))
    assert f.observed["signals"] == ["training_loss_rising"] and f.epochs == [3]
    assert run(history(loss=[1.0, 0.5, 0.4, 0.79])) is None
    # near zero a doubling is noise, not divergence
    assert run(history(loss=[0.01, 0.002, 0.005])) is None


def test_oscillation_autotrainer_count():
    swinging = [0.5, 0.6, 0.5, 0.6, 0.5, 0.61, 0.62, 0.63, 0.64, 0.65]  # 2 swings in 10 epochs: 2 >= 0.2 × 10
    poor = flat(0.6, 11)  # best val accuracy below 0.7: the run is not learning well
    f = run(history(accuracy=swinging, val_accuracy=poor[:10]))
    assert f.observed["signals"] == ["oscillation_accuracy"] and f.observed["accuracy_swings"] == 2
    assert {r.id for r in f.remedies} >= {"lower_learning_rate", "add_reduce_lr_on_plateau", "increase_batch_size"}
    assert run(history(accuracy=swinging + [0.66], val_accuracy=poor)) is None  # 2 < 0.2 × 11


def test_oscillation_amplitude_threshold():
    assert run(history(val_accuracy=[0.5, 0.53] * 5)).observed["val_accuracy_swings"] == 4
    assert run(history(val_accuracy=[0.5, 0.529] * 5)) is None


def test_weak_signals_alone_are_quiet_on_a_run_that_learns_well():
    swinging = [0.5, 0.6, 0.5, 0.6, 0.5, 0.61, 0.62, 0.63, 0.64, 0.65]
    assert run(history(accuracy=swinging, val_accuracy=ramp(0.5, 0.025, 10))) is None  # best val 0.725
    assert run(history(accuracy=swinging, val_accuracy=ramp(0.5, 0.02, 10))) is not None  # best val 0.68
    assert run(history(val_accuracy=[0.7, 0.75] * 5)) is None  # swings of 0.05 around a good accuracy
    assert run(history(val_accuracy=[0.6, 0.69] * 5)).observed["signals"] == ["oscillation_val_accuracy"]


def test_large_update_ratio_is_supporting_evidence():
    f = run(history(update_ratio_head=[0.01, 0.11], val_accuracy=[0.4, 0.45]))
    assert f.observed["signals"] == ["large_update_ratio"] and f.observed["update_ratio_head"] == 0.11
    assert run(history(update_ratio_head=[0.01, 0.1], val_accuracy=[0.4, 0.45])) is None
    assert run(history(update_ratio_head=[0.01, 0.11], val_accuracy=[0.7, 0.8])) is None  # learns well
    alone = run(history(loss=[1.0, 0.9, math.nan]))
    both = run(history(loss=[1.0, 0.9, math.nan], update_ratio_head=[0.01, 0.2, 0.3], val_accuracy=[0.7, 0.8, 0.8]))
    assert set(both.observed["signals"]) == {"non_finite_loss", "large_update_ratio"}
    assert both.confidence > alone.confidence


def test_val_loss_spike_above_its_first_value():
    f = run(history(val_loss=[1.0, 0.8, 3.0, 2.0]))
    assert f.observed["signals"] == ["val_loss_spike"] and f.cause == "learning_rate_too_high"
    assert f.observed["val_loss_peak"] == 3.0 and f.observed["val_loss_peak_epoch"] == 2 and f.epochs == [2]
    assert run(history(val_loss=[1.0, 0.8, 2.99, 2.0])) is None  # below 3 × the first value
    assert run(history(val_loss=[0.1, 0.5, 0.6])) is None  # 6 × but only 0.5 above: not a spike


def test_after_unfreezing_a_pretrained_base():
    h = history(loss=[1.0, 0.9, math.nan], val_accuracy=[0.5, 0.4, 0.3])
    spec = {"model": {"trainable": "all"}, "optimizer": {"learning_rate": 1e-3}}
    f = run(h, spec)
    assert f.cause == "learning_rate_too_high_after_unfreezing" and f.diverging
    assert [r.id for r in f.remedies] == ["unfreeze_fewer_at_low_lr", "lower_learning_rate"]
    assert f.remedies[0].patch["model"] == {"trainable": "mixed8"}
    assert run(h, {"model": {"trainable": "mixed8"}}).cause == "learning_rate_too_high_after_unfreezing"
    # a frozen base, or a random-init base trained from scratch, is a plain learning-rate problem
    assert run(h, {"model": {"trainable": "head"}}).cause == "learning_rate_too_high"
    assert run(h, {"model": {"trainable": "all", "weights": None}}).cause == "learning_rate_too_high"


def test_remedy_lowers_the_current_learning_rate():
    f = run(history(loss=[1.0, math.nan]), {"optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}})
    assert f.remedies[0].patch == {"optimizer": {"learning_rate": 0.005}}
    assert f.remedies[1].patch == {"optimizer": {"name": "adam", "learning_rate": 0.001, "momentum": None}}


def test_abstains_without_any_signal():
    a = run(history(learning_rate=flat(1e-3, 4)))
    assert isinstance(a, Abstention) and a.missing
