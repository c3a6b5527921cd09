"""The autopilot's decision and its noise-aware outcome tests, on plain values (no database, no training)."""

from __future__ import annotations

import pytest

from analysis import Diagnosis, Finding, Remedy
from analysis.significance import by_min_gain, mcnemar, newcombe, wilson
from contract import predictions
from contract.autopilot import AutopilotSpec
from models.autopilot.decide import End, Facts, Fork, LastRound, decide, helped, target_reached

HEALTHY = Diagnosis(verdict="healthy", summary="fine")


def lr_too_low(*remedies: Remedy) -> Diagnosis:
    finding = Finding(rule="r", cause="learning_rate_too_low", confidence=0.9, summary="", remedies=list(remedies))
    return Diagnosis(verdict="stagnating", findings=[finding], summary="")


RAISE = Remedy(id="increase_learning_rate", text="×100", patch={"optimizer": {"learning_rate": 1e-4}})
LONGER = Remedy(id="train_longer", text="more", patch={"epochs": 14})


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
