"""The corpus check can fail: disabling any rule, shifting any rule's confidence by 0.3, or making any rule the
primary cause of runs it did not own each make `analysis.evaluate.gate` report failures."""

from __future__ import annotations

import json

import pytest

from analysis import calibration, evaluate
from analysis.findings import Finding
from analysis.rules import RULES

FIXTURES = evaluate.load_corpus()
BASELINE = json.loads(evaluate.BASELINE.read_text())["gate"]
RULE_IDS = list(RULES)


def failures() -> list[str]:
    return evaluate.gate(evaluate.score(FIXTURES), BASELINE)


def test_the_unmutated_analysis_passes():
    assert failures() == []


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_disabling_a_rule_fails_the_gate(rule_id, monkeypatch):
    monkeypatch.delitem(RULES, rule_id)
    assert failures()


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_shifting_a_rules_confidence_by_0_3_fails_the_gate(rule_id, monkeypatch):
    apply = calibration.apply

    def shifted(f: Finding) -> Finding:
        f = apply(f)
        if f.rule != rule_id:
            return f
        # towards the middle: a rule near certainty cannot be shifted further up
        c = f.confidence - 0.3 if f.confidence >= 0.5 else f.confidence + 0.3
        return f.model_copy(update={"confidence": round(c, 3)})

    monkeypatch.setattr(calibration, "apply", shifted)
    assert failures()


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_a_rule_claiming_runs_it_did_not_own_fails_the_gate(rule_id, monkeypatch):
    rule = RULES[rule_id]
    check = rule.check

    def claims(view, p):
        found = check(view, p)
        if isinstance(found, list) and found:
            return found
        cause = next((c for c in rule.causes if c not in evaluate.SYMPTOMS), rule.causes[0])
        return [Finding(rule=rule_id, cause=cause, confidence=0.99, summary="mutant: claims every run")]

    monkeypatch.setattr(rule, "check", claims)
    assert failures()


def test_rules_silent_until_epoch_12_fail_the_gate(monkeypatch):
    """Every rule waiting for 12 epochs: the first correct findings come too late."""
    for rule in RULES.values():
        check = rule.check

        def late(view, p, check=check):
            return [] if view.n < 12 else check(view, p)

        monkeypatch.setattr(rule, "check", late)
    assert any("first correct finding" in f for f in failures())


def test_ignoring_the_probe_results_fails_the_gate(monkeypatch):
    """The probes view diagnosed as if no probe had run: what the label check confirmed is lost."""
    from analysis import view

    monkeypatch.setattr(view, "parse_probes", lambda probes: {})
    assert any("with probes" in f for f in failures())
