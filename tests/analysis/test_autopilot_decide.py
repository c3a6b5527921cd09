"""The autopilot's decision and its noise-aware outcome tests, on plain values (no database, no training)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis import Diagnosis, Finding, Remedy
from analysis.significance import by_min_gain, mcnemar, newcombe, wilson
from contract import predictions
from contract.autopilot import AutopilotSpec
from models.autopilot.decide import (
    IMAGENET_UNAVAILABLE,
    End,
    Facts,
    Fork,
    LastRound,
    decide,
    go_on_from_child,
    helped,
    plateaued,
    target_reached,
)

HEALTHY = Diagnosis(verdict="healthy", summary="fine")


def lr_too_low(*remedies: Remedy) -> Diagnosis:
    finding = Finding(rule="r", cause="learning_rate_too_low", confidence=0.9, summary="", remedies=list(remedies))
    return Diagnosis(verdict="stagnating", findings=[finding], summary="")


RAISE = Remedy(id="increase_learning_rate", text="×100", patch={"optimizer": {"learning_rate": 1e-4}})
RAISE_AGAIN = Remedy(id="increase_learning_rate", text="×4", patch={"optimizer": {"learning_rate": 4e-4}})
LONGER = Remedy(id="train_longer", text="more", patch={"epochs": 14})
IMAGENET = Remedy(id="use_imagenet_weights", text="pre-trained", patch={"model": {"weights": "imagenet"}})
UNFREEZE = Remedy(id="unfreeze_top_blocks", text="unfreeze", patch={"model": {"trainable": "mixed8"}})
LOW = "learning_rate_too_low"


def round_(direction: str | None, gain: float | None, remedy: str = "increase_learning_rate") -> LastRound:
    return LastRound(LOW, (remedy,), direction, gain)


def after(last: LastRound, **facts) -> Facts:
    """Facts after round 2 of 3 whose remedy (a raised rate) is tried, with `base` as measure would pick it."""
    return Facts(
        **{
            "rounds_done": 2,
            "current": lr_too_low(RAISE),
            "base": lr_too_low(RAISE),
            "last": last,
            "previous": round_("better", 0.25),
            "tried": frozenset({"increase_learning_rate"}),
            **facts,
        }
    )


def test_exact_mcnemar_counts_only_the_images_the_two_runs_disagree_on():
    same = [True] * 30 + [False] * 18
    result = mcnemar(same, [True] * 40 + [False] * 8)  # 10 images only the child got right, none the other way
    assert result.direction == "better" and result.evidence["p_better"] == pytest.approx(0.5**10, rel=1e-3)
    assert mcnemar(same, same).direction == "unclear"  # no disagreement: no evidence either way
    swapped = [not x for x in same[:2]] + same[2:]  # two images lost, none gained: not enough to call it worse
    assert mcnemar(same, swapped).direction == "unclear"
    assert mcnemar([True] * 12, [False] * 12).direction == "worse"
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_intervals_use_the_validation_size():
    low, high = wilson(24, 48)
    assert low < 0.5 < high and high - low < 0.3
    assert newcombe(0.5, 0.55, 48, 48).direction == "unclear"  # 2.4 images on 48: noise
    assert newcombe(0.5, 0.95, 12, 12).direction == "better"
    assert newcombe(0.9, 0.3, 48, 48).direction == "worse"
    assert by_min_gain(0.02, 0.01).direction == "better" and by_min_gain(-0.005, 0.01).direction == "unclear"


def test_predictions_round_trip_compactly():
    stored = predictions.encode(3, [0, 2, 1], [0, 1, 1])
    assert stored["dtype"] == "B" and predictions.decode(stored) == ([0, 2, 1], [0, 1, 1])
    assert predictions.correct(stored) == ([True, False, True], [0, 1, 1])
    wide = predictions.encode(1, [300, 2], [300, 3])  # more than 255 classes: two bytes an image
    assert wide["dtype"] == "H" and predictions.decode(wide) == ([300, 2], [300, 3])


def test_only_a_round_better_beyond_noise_helped():
    assert helped(None)
    assert helped(LastRound("c", ("r",), "better"))
    assert not helped(LastRound("c", ("r",), "unclear")) and not helped(LastRound("c", ("r",), None))


def test_an_unclear_round_goes_on_from_the_better_point_estimate():
    assert go_on_from_child(None) and go_on_from_child(round_("better", 0.25))
    assert go_on_from_child(round_("unclear", 0.042))
    assert go_on_from_child(round_("unclear", 0.0))  # a tie: the child, which trained for longer
    assert not go_on_from_child(round_("unclear", -0.021))
    assert not go_on_from_child(round_("worse", -0.2)) and not go_on_from_child(round_(None, None))
    assert not helped(round_("unclear", 0.042))  # what a lineage reports as a fix stays "better" only


def test_an_unclear_round_with_no_drop_is_followed_up_in_its_direction():
    config = AutopilotSpec(max_rounds=3)
    further = (RAISE_AGAIN, {"update_ratio": 4e-4})
    step = decide(config, after(round_("unclear", 0.042), follow_up=further))
    assert isinstance(step, Fork) and (step.remedy, step.cause, step.confidence) == (RAISE_AGAIN, LOW, None)
    assert step.follow_up == {"update_ratio": 4e-4}
    step = decide(config, after(round_("unclear", 0.0), follow_up=(LONGER, {"best_epoch": 8})))
    assert isinstance(step, Fork) and step.remedy == LONGER
    # nothing left after it: the lineage did not go back, so it is not `no_gain`, and it was no proven fix either
    ended = decide(config, after(round_("unclear", 0.0), current=HEALTHY, base=HEALTHY))
    assert isinstance(ended, End) and ended.reason == "no_confident_cause"


def test_an_unclear_round_that_scored_lower_is_not_followed_up():
    config = AutopilotSpec(max_rounds=3)
    step = decide(config, after(round_("unclear", -0.021), follow_up=(RAISE_AGAIN, {"update_ratio": 4e-4})))
    assert isinstance(step, End) and step.reason == "no_gain"
    other = decide(config, after(round_("unclear", -0.021), base=lr_too_low(RAISE, LONGER)))
    assert isinstance(other, Fork) and other.remedy == LONGER and other.confidence == 0.9


def test_two_unclear_rounds_without_a_point_gain_end_no_gain():
    config = AutopilotSpec(max_rounds=5)
    untried = {"base": lr_too_low(RAISE, LONGER)}
    flat = after(round_("unclear", 0.0, "train_longer"), previous=round_("unclear", -0.021), **untried)
    assert plateaued(flat.last, flat.previous)
    step = decide(config, flat)
    assert isinstance(step, End) and step.reason == "no_gain" and "two rounds in a row" in step.detail
    # a point gain in either round is not a plateau: small gains that 48 images cannot confirm go on
    rising = after(round_("unclear", 0.0, "train_longer"), previous=round_("unclear", 0.042), **untried)
    assert not plateaued(rising.last, rising.previous)
    assert isinstance(decide(config, rising), Fork)
    assert not plateaued(round_("unclear", 0.0), round_("better", 0.25))
    assert not plateaued(round_("unclear", 0.0), None)


def test_a_worse_round_is_never_followed_up_and_ends_no_gain_when_nothing_is_left():
    config = AutopilotSpec(max_rounds=3)
    worse = round_("worse", -0.2)
    facts = after(worse, worse=frozenset({"increase_learning_rate"}), follow_up=(LONGER, {"best_epoch": 8}))
    step = decide(config, facts)
    assert isinstance(step, End) and step.reason == "no_gain"
    # an untried remedy of the parent's diagnosis is still taken
    step = decide(config, Facts(**{**facts.__dict__, "base": lr_too_low(RAISE, LONGER)}))
    assert isinstance(step, Fork) and step.remedy == LONGER and step.follow_up is None


def test_without_imagenet_weights_the_remedy_that_needs_them_is_skipped_with_its_reason():
    frozen = Finding(rule="r", cause="base_too_frozen", confidence=0.9, summary="", remedies=[IMAGENET, UNFREEZE])
    diagnosis = Diagnosis(verdict="stagnating", findings=[frozen], summary="")
    config = AutopilotSpec()
    online = Facts(rounds_done=0, current=diagnosis, base=diagnosis)
    assert decide(config, online).remedy == IMAGENET
    offline = Facts(rounds_done=0, current=diagnosis, base=diagnosis, imagenet_available=False)
    step = decide(config, offline)
    assert isinstance(step, Fork) and step.remedy == UNFREEZE
    assert step.evidence["skipped"] == {"use_imagenet_weights": IMAGENET_UNAVAILABLE}
    # nothing else left: the end says which remedy could not run and why
    ended = decide(config, Facts(**{**offline.__dict__, "tried": frozenset({"unfreeze_top_blocks"})}))
    assert isinstance(ended, End) and "use_imagenet_weights" in ended.detail and "IMAGENET_AVAILABLE" in ended.detail
    # an untried offline remedy ranked first is chosen as before, with nothing recorded as skipped
    first = diagnosis.model_copy(update={"findings": [frozen.model_copy(update={"remedies": [UNFREEZE, IMAGENET]})]})
    step = decide(config, Facts(rounds_done=0, current=first, base=first, imagenet_available=False))
    assert step.remedy == UNFREEZE and "skipped" not in step.evidence


def test_a_target_reached_ends_the_lineage():
    assert target_reached({"val_accuracy": 0.9}, {"val_accuracy": 0.91}) is not None
    assert target_reached({"val_loss": 0.3}, {"val_loss": 0.35}) is None
    assert target_reached({"val_loss": 0.3}, {"val_loss": 0.25}) is not None
    config = AutopilotSpec(target={"val_accuracy": 0.9})
    step = decide(
        config,
        Facts(rounds_done=0, current=lr_too_low(RAISE), base=lr_too_low(RAISE), current_bests={"val_accuracy": 0.95}),
    )
    assert isinstance(step, End) and step.reason == "target_reached" and "0.95" in step.detail


def test_the_last_round_allowed_is_judged_before_max_rounds():
    config = AutopilotSpec(max_rounds=1)
    fixed = Facts(rounds_done=1, current=HEALTHY, base=HEALTHY, last=LastRound("c", ("r",), "better"))
    assert decide(config, fixed).reason == "healthy"
    unclear = Facts(rounds_done=1, current=HEALTHY, base=HEALTHY, last=LastRound("c", ("r",), "unclear"))
    assert decide(config, unclear).reason == "max_rounds"


def test_a_direction_that_made_things_worse_is_never_taken_again():
    config = AutopilotSpec()
    facts = Facts(
        rounds_done=2,
        current=HEALTHY,
        base=lr_too_low(RAISE),
        last=LastRound("learning_rate_too_low", ("train_longer",), "better"),
        tried=frozenset({"train_longer"}),
        worse=frozenset({"increase_learning_rate"}),
        follow_up=(RAISE, {"update_ratio": 1e-4}),
    )
    step = decide(config, facts)
    assert isinstance(step, End) and step.reason == "no_confident_cause"


def test_a_measured_learning_rate_replaces_the_rule_of_thumb():
    config = AutopilotSpec()
    facts = Facts(
        rounds_done=0,
        current=lr_too_low(RAISE),
        base=lr_too_low(RAISE),
        learning_rate=1e-6,
        measured_lr=(3e-4, {"probe": "lr_range", "probe_id": "7"}),
    )
    step = decide(config, facts)
    assert isinstance(step, Fork) and step.remedy.patch == {"optimizer": {"learning_rate": 3e-4}}
    assert step.evidence == {
        "learning_rate_from": "range_test",
        "suggested_lr": 3e-4,
        "probe": "lr_range",
        "probe_id": "7",
    }
    # a suggestion that moves the rate the other way is not what the finding asked for: the rule's value stays
    against = decide(config, Facts(**{**facts.__dict__, "measured_lr": (1e-7, {"probe": "lr_range"})}))
    assert against.remedy.patch == RAISE.patch and against.evidence["learning_rate_from"] == "rule"
    # other remedies ignore it
    other = decide(config, Facts(**{**facts.__dict__, "base": lr_too_low(LONGER), "current": lr_too_low(LONGER)}))
    assert other.remedy == LONGER and other.evidence == {}


def test_a_penalty_the_childs_confident_finding_names_again_is_loosened_again():
    """L2 0.5 cut to 0.05 can still be the brake: when the child's finding names reduce_l2 again with its own value
    and the round was not worse, the lineage loosens it once more, before ending on 'every remedy tried'."""
    again = Remedy(id="reduce_l2", text="÷10", patch={"regularization": {"l2": 0.005}})
    strong = Finding(rule="r", cause="regularization_too_strong", confidence=0.96, summary="", remedies=[again])
    child = Diagnosis(verdict="stagnating", findings=[strong], summary="")
    last = LastRound("regularization_too_strong", ("reduce_l2",), "unclear", 0.0)
    facts = Facts(rounds_done=1, current=child, base=child, last=last, tried=frozenset({"reduce_l2"}))
    step = decide(AutopilotSpec(), facts)
    assert step.remedy.patch == {"regularization": {"l2": 0.005}} and step.evidence["loosened_again"] == "reduce_l2"
    # a round that made things worse is never carried further; a lower point estimate hands back to the parent
    assert isinstance(decide(AutopilotSpec(), replace(facts, worse=frozenset({"reduce_l2"}))), End)
    lower = replace(facts, last=LastRound("regularization_too_strong", ("reduce_l2",), "unclear", -0.04))
    assert isinstance(decide(AutopilotSpec(), lower), End)
    # the learning rate is not among them: its follow-up reads the measured step sizes instead
    raised = replace(facts, base=lr_too_low(RAISE), current=lr_too_low(RAISE), tried=frozenset({RAISE.id}))
    assert isinstance(decide(AutopilotSpec(), raised), End)
