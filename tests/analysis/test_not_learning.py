import math
from functools import partial

from analysis import Abstention, diagnose
from tests.analysis import builders
from tests.analysis.builders import causes, ctx, flat, history

run = partial(builders.run, "not_learning")
THREE = {"a": 100, "b": 100, "c": 100}  # chance 1/3, near-chance bar 1/3 + 0.15 × 2/3 = 0.4333
N = 5
RANDOM_FROZEN = {"model": {"weights": None, "trainable": "head"}}
UNFROZEN = {"model": {"trainable": "all"}}
HEAD = {"model": {"trainable": "head"}}  # a pre-trained (ImageNet) base, frozen


def at_chance(n: int = N, **extra) -> list:
    return history(train_eval_accuracy=flat(0.35, n), val_accuracy=flat(0.33, n), **extra)


def test_frozen_random_init_base():
    f = run(at_chance(), RANDOM_FROZEN, class_counts_train=THREE)
    assert f.cause == "base_too_frozen" and f.confidence >= 0.8
    assert f.observed["chance"] == round(1 / 3, 4) and f.observed["near_chance_bar"] == 0.4333
    assert f.epochs == [2, 3, 4]
    assert [r.id for r in f.remedies][0] == "use_imagenet_weights"


def test_quiet_when_any_recent_epoch_is_above_the_bar():
    h = history(train_eval_accuracy=[0.35, 0.35, 0.35, 0.35, 0.44], val_accuracy=flat(0.33, N))
    assert run(h, RANDOM_FROZEN, class_counts_train=THREE) is None
    # only the latest `window` epochs count: an early good epoch does not clear a run that fell back to chance
    h = history(train_eval_accuracy=[0.6, 0.5, 0.35, 0.35, 0.35], val_accuracy=flat(0.33, N))
    assert run(h, RANDOM_FROZEN, class_counts_train=THREE).cause == "base_too_frozen"


def test_quiet_when_validation_learned_something():
    h = history(train_eval_accuracy=flat(0.35, N), val_accuracy=[0.33, 0.33, 0.33, 0.33, 0.45])
    assert run(h, RANDOM_FROZEN, class_counts_train=THREE) is None


def test_non_finite_or_diverged_loss_is_a_learning_rate_too_high():
    f = run(at_chance(loss=[1.1, 1.0, math.nan, math.nan, math.nan]), HEAD, class_counts_train=THREE)
    assert f.cause == "learning_rate_too_high" and f.observed["first_non_finite_epoch"] == 2
    assert f.remedies[0].id == "lower_learning_rate"
    f = run(at_chance(loss=[1.1, 2.3, 5.0, 4.0, 4.0]), HEAD, class_counts_train=THREE)
    assert f.cause == "learning_rate_too_high" and f.observed["first_loss"] == 1.1 and f.observed["max_loss"] == 5.0
    assert run(at_chance(loss=[1.1, 2.1, 1.5, 1.2, 1.1]), HEAD, class_counts_train=THREE).cause == "not_learning"
    f = run(at_chance(nonfinite_batches=[0, 0, 3, 0, 0]), HEAD, class_counts_train=THREE)
    assert f.cause == "learning_rate_too_high" and f.observed["nonfinite_batches"] == 3
    # the same divergence on a pre-trained base unfrozen at that rate
    f = run(at_chance(loss=[1.1, 2.3, 5.0, 4.0, 4.0]), UNFROZEN, class_counts_train=THREE)
    assert f.cause == "learning_rate_too_high_after_unfreezing" and f.remedies[0].id == "unfreeze_fewer_at_low_lr"


def test_oversized_steps_are_a_learning_rate_too_high():
    f = run(at_chance(update_ratio_head=flat(0.5, N)), HEAD, class_counts_train=THREE)
    assert f.cause == "learning_rate_too_high" and f.observed["update_ratio"] == 0.5


def test_a_dominant_weight_penalty():
    spec = {**UNFROZEN, "regularization": {"l2": 1e-2}}
    h = at_chance(train_eval_loss=flat(1.2, N), regularization_loss=flat(0.6, N))
    f = run(h, spec, class_counts_train=THREE)
    assert f.cause == "regularization_too_strong" and f.observed["penalty_share"] == 0.5
    assert f.remedies[0].id == "reduce_l2" and f.remedies[0].patch == {"regularization": {"l2": 0.001}}
    h = at_chance(train_eval_loss=flat(1.2, N), regularization_loss=flat(0.59, N))
    assert run(h, spec, class_counts_train=THREE).cause == "not_learning"


def test_heavy_dropout():
    f = run(at_chance(), {**UNFROZEN, "regularization": {"dropout": 0.8}}, class_counts_train=THREE)
    assert f.cause == "regularization_too_strong" and f.remedies[0].id == "reduce_dropout"
    assert (
        run(at_chance(), {**UNFROZEN, "regularization": {"dropout": 0.7}}, class_counts_train=THREE).cause
        == "not_learning"
    )


def test_tiny_update_ratio_is_a_learning_rate_too_low():
    spec = {**UNFROZEN, "optimizer": {"learning_rate": 1e-6}}
    f = run(at_chance(update_ratio_head=flat(1e-4, N), update_ratio_base=flat(2e-4, N)), spec, class_counts_train=THREE)
    assert f.cause == "learning_rate_too_low" and f.observed["update_ratio"] == 2e-4
    # the step is 15× too small for a healthy 3e-3: the remedy scales the rate by that much (between ×10 and ×100)
    assert f.remedies[0].patch == {"optimizer": {"learning_rate": 1.5e-5}}
    h = at_chance(update_ratio_head=flat(1e-4, N), update_ratio_base=flat(3e-4, N))  # the base moves enough
    assert run(h, spec, class_counts_train=THREE).cause == "not_learning"


def test_a_frozen_base_is_judged_by_the_head_update_alone():
    h = at_chance(update_ratio_head=flat(1e-4, N), update_ratio_base=flat(1e-2, N))
    assert run(h, {"model": {"trainable": "head"}}, class_counts_train=THREE).cause == "learning_rate_too_low"


def test_without_a_named_cause_a_low_confidence_symptom():
    symptom = run(at_chance(update_ratio_head=flat(1e-3, N)), UNFROZEN, class_counts_train=THREE)
    assert symptom.cause == "not_learning" and symptom.observed["update_ratio"] == 1e-3
    assert symptom.confidence < 0.5
    assert symptom.confidence < run(at_chance(), RANDOM_FROZEN, class_counts_train=THREE).confidence


def test_falls_back_to_keras_accuracy():
    h = history(accuracy=flat(0.35, N), val_accuracy=flat(0.33, N))
    assert run(h, RANDOM_FROZEN, class_counts_train=THREE).observed["train_source"] == "accuracy"


def test_abstains_without_accuracy_or_class_count():
    a = run(at_chance(), RANDOM_FROZEN)
    assert isinstance(a, Abstention) and a.missing == ["class counts"]
    a = run(history(val_accuracy=flat(0.33, N)), RANDOM_FROZEN, class_counts_train=THREE)
    assert isinstance(a, Abstention) and a.missing == ["train_eval_accuracy or accuracy"]
    assert (
        run(at_chance(n=2), RANDOM_FROZEN, class_counts_train=THREE).reason
        == "insufficient data: needs 3 epochs, have 2"
    )


def test_balanced_run_at_chance_is_never_class_imbalance():
    n = 8
    h = history(
        train_eval_accuracy=flat(0.5, n),
        val_accuracy=flat(0.5, n),
        loss=flat(0.69, n),
        train_eval_loss=flat(0.69, n),
        val_loss=flat(0.69, n),
        update_ratio_head=flat(2e-3, n),
        val_recall=[{"cat": 1.0, "dog": 0.0}] * n,
    )  # predicts one class: nothing learned
    d = diagnose(h, ctx(RANDOM_FROZEN, class_counts_train={"cat": 100, "dog": 100}))
    assert "class_imbalance" not in causes(d)
    assert d.primary_cause == "base_too_frozen" and d.findings[0].rule == "not_learning"
    assert not [f for f in d.findings if f.rule == "underfitting"]  # at chance it is not_learning's case
