from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import flat, history, ramp

run = partial(builders.run, "underfitting")
find = partial(builders.find, "underfitting")
N = 8
UNFROZEN = {"model": {"trainable": "all"}}


def stuck(train: float, val: float, n: int = N, **extra) -> list:
    return history(train_eval_accuracy=flat(train, n), val_accuracy=flat(val, n), **extra)


def test_base_too_frozen_fires_below_low_accuracy():
    f = find("base_too_frozen", stuck(0.45, 0.43, update_ratio_head=flat(1e-3, N)))
    assert f.confidence >= 0.6 and f.epochs == list(range(N - 6, N))
    assert [r.id for r in f.remedies] == ["unfreeze_top_blocks"]
    assert f.remedies[0].patch == {"model": {"trainable": "mixed8"}, "optimizer": {"learning_rate": 1e-5}}


def test_base_too_frozen_quiet_at_threshold_or_when_unfrozen():
    assert find("base_too_frozen", stuck(0.7, 0.7)) is None
    assert find("base_too_frozen", stuck(0.45, 0.43), UNFROZEN) is None


def test_random_frozen_base_is_more_confident_and_suggests_imagenet():
    plain = find("base_too_frozen", stuck(0.45, 0.43))
    random_base = find("base_too_frozen", stuck(0.45, 0.43), {"model": {"weights": None}})
    assert random_base.confidence > plain.confidence
    assert random_base.remedies[0].patch == {"model": {"weights": "imagenet"}}


def test_learning_rate_too_low_from_tiny_update_ratio():
    h = stuck(0.5, 0.5, update_ratio_head=flat(5e-6, N), update_ratio_base=flat(2e-6, N))
    f = find("learning_rate_too_low", h, {**UNFROZEN, "optimizer": {"learning_rate": 1e-6}})
    assert f.observed["update_ratio"] == 5e-6 and f.confidence >= 0.7
    assert f.remedies[0].patch == {"optimizer": {"learning_rate": 1e-4}}  # 600× too small a step: capped at ×100


def test_learning_rate_bound_is_a_per_step_update_ratio_of_3e_4():
    h = stuck(0.5, 0.5, update_ratio_head=flat(3e-4, N), update_ratio_base=flat(1e-5, N))
    assert find("learning_rate_too_low", h, UNFROZEN) is None
    h = stuck(0.5, 0.5, update_ratio_head=flat(2.9e-4, N), update_ratio_base=flat(1e-5, N))
    assert find("learning_rate_too_low", h, UNFROZEN).observed["update_ratio"] == 2.9e-4
    # DeepDiagnosis' 1e-5 is far below the per-step bound: blamed
    h = stuck(0.5, 0.5, update_ratio_head=flat(1e-5, N), update_ratio_base=flat(1e-5, N))
    assert find("learning_rate_too_low", h, UNFROZEN) is not None


def test_quiet_near_chance_which_is_not_learnings_case():
    h = stuck(0.5, 0.5, update_ratio_head=flat(1e-5, N))
    assert run(h, UNFROZEN, class_counts_train={"a": 10, "b": 10}) is None  # bar 0.575 for two classes
    assert run(h, UNFROZEN, class_counts_train={"a": 10, "b": 10, "c": 10}) is not None  # bar 0.433 for three
    # only the latest epochs count: a run that fell back to chance is still not_learning's
    h = history(train_eval_accuracy=[0.7, 0.6] + flat(0.5, N - 2), val_accuracy=flat(0.5, N))
    assert run(h, UNFROZEN, class_counts_train={"a": 10, "b": 10}) is None


def test_learning_rate_too_low_from_a_slow_crawl():
    crawl = history(train_eval_accuracy=ramp(0.3, 0.005, N), val_accuracy=ramp(0.3, 0.005, N))
    f = find("learning_rate_too_low", crawl, UNFROZEN)
    assert f.observed["slow_whole_run"] is True and f.confidence < 0.6
    steady = history(train_eval_accuracy=ramp(0.3, 0.01, N), val_accuracy=ramp(0.3, 0.01, N))
    assert run(steady, UNFROZEN) is None


def test_regularization_too_strong():
    spec = {**UNFROZEN, "regularization": {"dropout": 0.5}}
    f = find("regularization_too_strong", stuck(0.55, 0.56, update_ratio_head=flat(1e-3, N)), spec)
    assert f.remedies[0].id == "reduce_dropout" and f.remedies[0].patch == {"regularization": {"dropout": 0.2}}
    spec = {**UNFROZEN, "regularization": {"l2": 1e-3}}
    f = find("regularization_too_strong", stuck(0.55, 0.56), spec)
    assert f.remedies[0].patch == {"regularization": {"l2": 0.0001}}


def test_regularization_too_strong_from_the_penalty_share():
    spec = {**UNFROZEN, "regularization": {"l2": 1e-4}}  # below strong_l2, but the penalty is 35% of the loss
    h = stuck(0.55, 0.56, train_eval_loss=flat(1.0, N), regularization_loss=flat(0.35, N))
    f = find("regularization_too_strong", h, spec)
    assert f.observed["penalty_share"] == 0.35 and f.remedies[0].id == "reduce_l2"
    assert f.remedies[0].patch == {"regularization": {"l2": 1e-5}}
    h = stuck(0.55, 0.56, train_eval_loss=flat(1.0, N), regularization_loss=flat(0.29, N))
    assert find("regularization_too_strong", h, spec) is None


def test_regularization_quiet_below_threshold_or_with_a_gap():
    assert (
        find(
            "regularization_too_strong",
            stuck(0.55, 0.56),
            {**UNFROZEN, "regularization": {"dropout": 0.49, "l2": 9e-4}},
        )
        is None
    )
    assert find("regularization_too_strong", stuck(0.6, 0.4), {**UNFROZEN, "regularization": {"dropout": 0.6}}) is None


def test_lr_floor_reached_after_cuts():
    spec = {"callbacks": {"reduce_lr_on_plateau": {"min_lr": 1e-6}}}
    lr = [1e-3] * 3 + [1e-4] * 2 + [1e-5] * 2 + [1e-6] * 3
    h = stuck(0.85, 0.8, n=10, learning_rate=lr)
    f = find("lr_floor_reached", h, spec)
    assert f.observed["lr_cuts"] == [3, 5, 7] and f.observed["floor"] == 1e-6
    assert "raise_min_lr" in [r.id for r in f.remedies]
    assert find("lr_floor_reached", stuck(0.85, 0.8, n=10, learning_rate=lr[:-3] + [1e-5] * 3), spec) is None


def test_lr_floor_quiet_while_still_improving():
    spec = {"callbacks": {"reduce_lr_on_plateau": {"min_lr": 1e-6}}}
    h = history(
        train_eval_accuracy=ramp(0.5, 0.03, 10), val_accuracy=ramp(0.5, 0.03, 10), learning_rate=[1e-3] * 7 + [1e-6] * 3
    )
    assert run(h, spec) is None


def test_abstains_and_needs_enough_epochs():
    a = run(history(train_eval_accuracy=flat(0.5, N)))
    assert isinstance(a, Abstention) and a.missing == ["val_accuracy"]
    a = run(stuck(0.4, 0.4, n=5))
    assert a.reason == "insufficient data: needs 6 epochs, have 5"
