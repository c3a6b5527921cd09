"""The remedy ranking: priors per metric, shrinkage that weighs the outcomes' spread, and exploration."""

from __future__ import annotations

import pytest

from analysis import Diagnosis, Finding, Remedy
from analysis.ranking import Evidence, posterior, prior, rerank, score


def diagnosis(*remedies: str) -> Diagnosis:
    finding = Finding(
        rule="r",
        cause="c",
        confidence=0.9,
        summary="",
        remedies=[Remedy(id=r, text=r, patch={"x": i}) for i, r in enumerate(remedies)],
    )
    return Diagnosis(verdict="stagnating", findings=[finding], summary="")


def order(d: Diagnosis) -> list[str]:
    return [r.id for r in d.findings[0].remedies]


def test_without_evidence_the_rules_order_stands_exploring_or_not():
    d = diagnosis("first", "second", "third")
    assert order(rerank(d, {})) == order(rerank(d, {}, explore=True)) == ["first", "second", "third"]
    assert score(0, None) == prior(0) > prior(1) > prior(2)
    assert prior(0, "val_loss") != prior(0, "val_accuracy") or posterior(0, None, "val_loss") != posterior(0, None)


def test_outcomes_pull_the_score_and_a_wide_spread_pulls_less():
    assert score(0, Evidence(1, -0.05)) > prior(1)  # one bad outcome: the prior holds
    assert score(0, Evidence(10, -0.1)) < 0 < prior(1)  # ten: the evidence wins
    agreeing = posterior(0, Evidence(4, -0.05, variance=0.0001))
    scattered = posterior(0, Evidence(4, -0.05, variance=0.09))
    assert agreeing[0] < scattered[0] and agreeing[1] < scattered[1]


def test_an_untried_remedy_gets_its_chance_once_the_first_choice_stops_gaining():
    d = diagnosis("first", "second")
    once = {("c", "first"): Evidence(1, 0.0)}
    assert order(rerank(d, once)) == order(rerank(d, once, explore=True)) == ["first", "second"]
    thrice = {("c", "first"): Evidence(3, 0.01, variance=0.0004)}  # gains of about one image in a hundred
    assert order(rerank(d, thrice)) == ["first", "second"]  # by the mean alone it would never be tried
    assert order(rerank(d, thrice, explore=True)) == ["second", "first"]  # exploring, it is
    # a remedy that has gained every time keeps its place, exploring or not
    good = {("c", "first"): Evidence(5, 0.1, variance=0.0004)}
    assert order(rerank(d, good, explore=True)) == ["first", "second"]


@pytest.mark.parametrize("metric", ["val_accuracy", "val_loss", "accuracy", "loss"])
def test_every_metric_has_a_prior(metric):
    mean, sd = posterior(0, None, metric)
    assert mean > 0 and sd > 0
