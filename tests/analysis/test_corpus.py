"""The recorded benchmark runs as a regression corpus: re-diagnosed in seconds, without training.

Fails when macro-F1 or the false-alarm rate on healthy runs of any family is worse than the figures in
tests/analysis/corpus/baseline.json (`python -m analysis.evaluate --record-baseline` writes them after a
rule change that improves them). The corpus is recorded by `python -m benchmarks.diagnosis.run`.
"""

from __future__ import annotations

import copy
import json
import time

import pytest

from analysis import evaluate

EPS = 1e-9


def _run(case, planted, found, findings, *, primary=None, first=None, manifested=True, accepted=None):
    return {
        "family": "f",
        "case": case,
        "seed": 0,
        "planted": planted,
        "accepted": accepted or ([planted] if planted else []),
        "manifested": manifested,
        "found": found,
        "findings": findings,
        "primary_cause": primary,
        "first_correct_epoch": first,
        "planned_epochs": 12,
    }


TINY = [
    _run("healthy", None, [], []),
    _run("healthy", None, ["overfitting"], [("overfitting", 0.5)], primary="overfitting"),
    _run("overfit", "overfitting", ["overfitting"], [("overfitting", 0.9)], primary="overfitting", first=3),
    _run("overfit", "overfitting", [], [("plateau", 0.4)], primary="plateau"),
    _run(
        "low", "lr_low", ["lr_low", "overfitting"], [("lr_low", 0.7), ("overfitting", 0.3)], primary="lr_low", first=6
    ),
    _run("low", "lr_low", ["lr_low"], [("lr_low", 0.8)], primary="lr_low", first=1, manifested=False),
]


def test_scoring_math_on_a_hand_made_corpus():
    s = evaluate.score_family(TINY)
    assert (s["runs"], s["counted"], s["not_manifested"]) == (6, 5, ["low-s0"])
    over, low = s["per_cause"]["overfitting"], s["per_cause"]["lr_low"]
    assert (over["flagged"], over["true_positive"], over["planted"]) == (3, 1, 2)
    assert (over["precision"], over["recall"], over["f1"]) == (0.3333, 0.5, 0.4)
    assert (low["precision"], low["recall"], low["f1"]) == (1.0, 1.0, 1.0)
    assert s["macro_f1"] == 0.7
    assert (s["healthy_runs"], s["false_alarms"], s["false_alarm_rate"]) == (2, 1, 0.5)
    assert s["false_alarm_ci95"] == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert s["confusion"] == {
        "healthy": {"none": 1, "overfitting": 1},
        "overfit": {"overfitting": 1, "plateau": 1},
        "low": {"lr_low": 1},
    }
    assert s["first_correct"] == {
        "plants": 3,
        "found": 2,
        "median_epoch": 4.5,
        "median_fraction": 0.375,
        "by_half_of_planned": 0.6667,
        "by_30_percent_of_planned": 0.3333,
    }
    cal = s["calibration"]
    assert cal["findings"] == 4  # the plateau symptom is not scored
    assert [b["findings"] for b in cal["bins"]] == [0, 1, 1, 1, 1]
    assert [b["fraction_correct"] for b in cal["bins"]] == [None, 0.0, 0.0, 1.0, 1.0]
    assert cal["ece"] == pytest.approx(0.3, abs=1e-4)


def test_an_accepted_alternative_counts_as_the_planted_cause():
    fx = {"planted": "lr_after_unfreezing", "accepted": ["lr_after_unfreezing", "lr_high"]}
    finding = lambda c: evaluate.Diagnosis.model_construct(findings=[type("F", (), {"cause": c})()])  # noqa: E731
    assert evaluate.found(fx, finding("lr_high")) == {"lr_after_unfreezing"}
    assert evaluate.found(fx, finding("plateau")) == set()
    assert evaluate.found({"planted": None, "accepted": []}, finding("overfitting")) == {"overfitting"}


def test_wilson_interval():
    assert evaluate.wilson(0, 0) is None
    lo, hi = evaluate.wilson(0, 30)
    assert lo == 0.0 and hi == pytest.approx(0.1135, abs=1e-4)


def test_prefix_diagnosis_sees_only_the_prefix():
    fx = {
        "history": [{"epoch": e, "val_loss": 1.0 / e, "loss": 1.0 / e} for e in range(1, 7)],
        "context": {"spec": {}, "planned_epochs": 6, "status": "succeeded", "lr_reductions": [2, 5]},
    }
    assert evaluate.diagnose_fixture(fx, 3).epochs_analysed == 3
    assert evaluate.diagnose_fixture(fx).epochs_analysed == 6


def test_corpus_gate_passes():
    """Per-cause F1 no worse than the baseline, false alarms ≤ 2 % on healthy runs, development ECE ≤ 0.05, each
    rule's mean confidence within 0.15 of its fraction right, first correct findings no later, stalls judged."""
    result = evaluate.score(evaluate.load_corpus())
    assert evaluate.gate(result, json.loads(evaluate.BASELINE.read_text())["gate"]) == []
    assert result["all"]["healthy_runs"] >= 40 + 14  # the synthetic healthy runs and the recorded ones


def test_corpus_is_no_worse_than_the_recorded_baseline():
    fixtures = evaluate.load_corpus()
    assert fixtures, "no recorded runs under tests/analysis/corpus (python -m benchmarks.diagnosis.run)"
    recorded = json.loads(evaluate.BASELINE.read_text())["families"]
    t0 = time.perf_counter()
    now = evaluate.headline(evaluate.score(fixtures))
    assert time.perf_counter() - t0 < 60
    assert set(now) == set(recorded)
    for family, was in recorded.items():
        got = now[family]
        assert got["counted"] == was["counted"], f"{family}: the corpus changed; record the baseline again"
        if was["macro_f1"] is not None:
            assert got["macro_f1"] >= was["macro_f1"] - EPS, f"{family}: macro-F1 {got['macro_f1']} < {was['macro_f1']}"
        if was["false_alarm_rate"] is not None:
            assert got["false_alarm_rate"] <= was["false_alarm_rate"] + EPS, (
                f"{family}: false alarms {got['false_alarm_rate']} > {was['false_alarm_rate']}"
            )


def test_runs_recorded_with_probes_are_scored_in_both_views():
    fixtures = evaluate.load_corpus()
    probed = [fx for fx in fixtures if fx.get("probes")]
    assert len(probed) >= 30
    # scenes' range tests swept from the latest weights and were dropped; later runs sweep from the initial weights
    assert all("lr_range" not in fx["probes"] for fx in probed if fx["family"] == "scenes")
    assert all(fx["probes"]["lr_range"]["start"] == "initial weights" for fx in probed if "lr_range" in fx["probes"])
    assert all(not fx["context"].get("probes") for fx in fixtures)  # curves only: the context as the job ended
    result = evaluate.score(fixtures)
    assert {r["view"] for r in result["runs"]} == {"curves"}
    assert {r["view"] for r in result["probe_runs"]} == {"probes"} and len(result["probe_runs"]) == len(probed)
    dev = result["with_probes"]["development"]
    assert dev["runs"] == sum(not fx.get("held_out") for fx in probed)
    assert dev["calibration"]["findings"] > 0 and dev["calibration"]["ece"] is not None
    assert dev["healthy_runs"] >= 6  # scenes' healthy runs, with their memorization, linear probe and label check
    assert "first_correct" not in dev  # the probes ran after the last epoch: no first-correct figure in this view


def test_the_gate_holds_the_probes_view_to_its_own_bounds():
    result = evaluate.score(evaluate.load_corpus())
    baseline = json.loads(evaluate.BASELINE.read_text())["gate"]
    assert evaluate.gate(result, baseline) == []
    off = copy.deepcopy(result)
    off["with_probes"]["development"]["calibration"]["ece"] = evaluate.MAX_ECE_WITH_PROBES + 0.01
    assert any("ECE with probes" in f for f in evaluate.gate(off, baseline))
    alarms = copy.deepcopy(result)
    alarms["with_probes"]["all"]["false_alarm_rate"] = 1 / 6
    assert any("false alarms with probes" in f for f in evaluate.gate(alarms, baseline))
    lost = copy.deepcopy(result)
    lost["with_probes"]["all"]["per_cause"]["learning_rate_too_low"]["f1"] = 0.5
    assert any("F1 with probes" in f for f in evaluate.gate(lost, baseline))
