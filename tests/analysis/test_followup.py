"""analysis.followup: what the autopilot does after a remedy that helped, when its run ended still improving."""

import pytest

from analysis.followup import follow_up, still_improving
from analysis.view import View
from tests.analysis.builders import ctx, flat, healthy, history, ramp

CLIMBING = ramp(0.3, 0.05, 10)  # +0.05 an epoch up to the last one
LEVELLED = [0.3, 0.5, 0.65, 0.75, 0.8, 0.82, 0.83, 0.83, 0.832, 0.831]
SPEC = {"optimizer": {"name": "adam", "learning_rate": 1e-4}, "epochs": 10}
COUNTS = {"a": 24, "b": 24}  # 48 validation images: one flip is 0.021, the resolution 1.5 / 48 = 0.031


def view(val, **columns):
    return View(history(val_accuracy=val, **columns), ctx(SPEC, class_counts_val=COUNTS, class_counts_train=COUNTS))


def test_still_improving_needs_the_best_epoch_at_the_end_and_a_gain_beyond_noise():
    found = still_improving(view(CLIMBING))
    assert found["best_epoch"] == 9 and found["gain_over_last_epochs"] == pytest.approx(0.15)
    assert found["min_delta"] == pytest.approx(1.5 / 48, abs=1e-4)
    assert still_improving(view(LEVELLED)) is None  # +0.012 over the last three epochs: one image flipping
    assert still_improving(view(CLIMBING[:7] + [0.62, 0.6, 0.58])) is None  # the best epoch is three from the end
    assert still_improving(view(CLIMBING[:3])) is None  # too short to tell


def test_a_loss_improves_downwards():
    falling = ramp(1.2, -0.08, 10)
    assert still_improving(View(history(val_loss=falling), ctx(SPEC)), "val_loss")["gain_over_last_epochs"] < 0
    assert still_improving(View(history(val_loss=list(reversed(falling))), ctx(SPEC)), "val_loss") is None


def records(val, ratio=1e-3, **extra):
    return history(**{**healthy(len(val)), "val_accuracy": val, "update_ratio_head": flat(ratio, len(val)), **extra})


def context(spec=SPEC):
    return ctx(spec, class_counts_val=COUNTS, class_counts_train=COUNTS)


def test_a_raised_rate_is_raised_again_by_how_far_the_steps_are_from_healthy():
    remedy, evidence = follow_up(records(CLIMBING, ratio=1e-3), context(), applied=["increase_learning_rate"])
    assert remedy.id == "increase_learning_rate" and remedy.patch == {"optimizer": {"learning_rate": 3e-4}}
    assert evidence["best_epoch"] == 9
    tiny, _ = follow_up(records(CLIMBING, ratio=1e-5), context(), applied=["increase_learning_rate"])
    assert tiny.patch == {"optimizer": {"learning_rate": 1e-3}}  # at most ×10 a round


def test_healthy_steps_are_not_pushed_further_the_run_gets_more_epochs():
    remedy, _ = follow_up(records(CLIMBING, ratio=2e-3), context(), applied=["increase_learning_rate"])
    assert remedy.id == "train_longer" and remedy.patch == {"epochs": 20}


def test_a_tightening_remedy_is_never_repeated():
    remedy, _ = follow_up(records(CLIMBING), context(), applied=["lower_learning_rate"])
    assert remedy.id == "train_longer"


def test_a_penalty_lowered_is_lowered_again_only_while_it_still_holds_the_loss():
    spec = {**SPEC, "regularization": {"l2": 0.05}}
    n = len(CLIMBING)
    holding = records(CLIMBING, regularization_loss=flat(0.4, n), train_eval_loss=flat(1.0, n))
    remedy, _ = follow_up(holding, context(spec), applied=["reduce_l2"])
    assert remedy.id == "reduce_l2" and remedy.patch == {"regularization": {"l2": 0.005}}
    released = records(CLIMBING, regularization_loss=flat(0.02, n), train_eval_loss=flat(1.0, n))
    assert follow_up(released, context(spec), applied=["reduce_l2"])[0].id == "train_longer"


def test_dropout_is_lowered_to_its_floor_then_the_run_trains_longer():
    remedy, _ = follow_up(
        records(CLIMBING), context({**SPEC, "regularization": {"dropout": 0.5}}), applied=["reduce_dropout"]
    )
    assert remedy.patch == {"regularization": {"dropout": 0.2}}
    at_floor = context({**SPEC, "regularization": {"dropout": 0.2}})
    assert follow_up(records(CLIMBING), at_floor, applied=["reduce_dropout"])[0].id == "train_longer"


def test_a_run_that_levelled_off_has_no_follow_up():
    levelled_loss = [round(1.2 - v, 4) for v in LEVELLED]
    for applied in (["increase_learning_rate"], ["reduce_dropout"], ["lower_learning_rate"]):
        spec = {**SPEC, "regularization": {"dropout": 0.5}}
        assert follow_up(records(LEVELLED, ratio=2e-3, val_loss=levelled_loss), context(spec), applied=applied) is None


def test_a_capped_raise_is_completed_even_on_a_run_that_levelled_off():
    levelled_loss = [round(1.2 - v, 4) for v in LEVELLED]
    remedy, evidence = follow_up(
        records(LEVELLED, ratio=6e-4, val_loss=levelled_loss), context(), applied=["increase_learning_rate"]
    )
    # steps a fifth of a healthy one's: ×5 more
    assert remedy.patch == {"optimizer": {"learning_rate": 5e-4}}
    assert evidence == {"update_ratio": 6e-4, "healthy_update_ratio": 3e-3}


def test_accuracy_in_coarse_steps_with_the_loss_still_falling_loosens_a_brake_but_adds_no_epochs():
    falling = ramp(1.2, -0.04, len(LEVELLED))
    remedy, evidence = follow_up(records(LEVELLED, val_loss=falling), context(), applied=["increase_learning_rate"])
    assert remedy.id == "increase_learning_rate" and evidence["metric"] == "val_loss"
    assert follow_up(records(LEVELLED, val_loss=falling), context(), applied=["lower_learning_rate"]) is None


def test_another_brake_the_finding_named_is_loosened_first_while_it_is_still_set_strong():
    strong = context({**SPEC, "regularization": {"dropout": 0.8, "l2": 0.05}})
    named = ["reduce_l2", "reduce_dropout"]
    levelled_loss = [round(1.2 - v, 4) for v in LEVELLED]
    settled = records(LEVELLED, val_loss=levelled_loss)
    remedy, evidence = follow_up(settled, strong, applied=["reduce_l2"], named=named, tried={"reduce_l2"})
    assert remedy.patch == {"regularization": {"dropout": 0.5}} and evidence["strong_dropout"] == 0.5
    # already tried on this lineage, or no longer strong: nothing to loosen on a run that settled
    assert follow_up(settled, strong, applied=["reduce_l2"], named=named, tried={"reduce_l2", "reduce_dropout"}) is None
    mild = context({**SPEC, "regularization": {"dropout": 0.3, "l2": 0.05}})
    assert follow_up(settled, mild, applied=["reduce_l2"], named=named, tried={"reduce_l2"}) is None
    # a brake that is not a release (tightening advice) is never applied this way
    assert follow_up(settled, strong, applied=["reduce_l2"], named=["add_early_stopping"], tried={"reduce_l2"}) is None
