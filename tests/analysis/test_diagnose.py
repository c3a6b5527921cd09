import math

import pytest

from analysis import RULES, Diagnosis, EpochRecord, diagnose, remedy_by_id
from tests.analysis.builders import causes, ctx, flat, healthy, history, ramp

BALANCED = {"cat": 100, "dog": 100}


def test_healthy_history_is_healthy_with_no_findings():
    d = diagnose(history(**healthy()), ctx(class_counts_train=BALANCED))
    assert d.verdict == "healthy"
    assert d.findings == [] and d.primary_cause is None
    assert d.abstentions == []
    assert d.epochs_analysed == 12
    assert "Healthy" in d.summary


def test_no_epochs_is_insufficient_data():
    d = diagnose([], ctx())
    assert d.verdict == "insufficient_data"
    assert any(a.reason == "insufficient data: needs 6 epochs, have 0" for a in d.abstentions)


def test_few_epochs_is_insufficient_data_not_healthy():
    d = diagnose(history(**healthy(3)), ctx(class_counts_train=BALANCED))
    assert d.verdict == "insufficient_data"
    reasons = {a.rule: a.reason for a in d.abstentions}
    assert reasons["plateau"] == "insufficient data: needs 6 epochs, have 3"
    assert reasons["underfitting"] == "insufficient data: needs 6 epochs, have 3"


def test_every_rule_abstaining_is_insufficient_data():
    # a ReduceLROnPlateau callback and a known LR cut make premature_lr_cut judge, and abstain for want of an accuracy
    d = diagnose(
        history(batch_loss_mean=ramp(1, -0.1, 8)),
        ctx(lr_reductions=[3], spec={"callbacks": {"reduce_lr_on_plateau": {"patience": 2}}}),
    )
    assert d.verdict == "insufficient_data" and not d.findings
    assert len(d.abstentions) == len(RULES)


def test_a_history_without_any_judged_signal_is_not_healthy():
    d = diagnose(history(batch_loss_mean=ramp(1, -0.1, 8)), ctx())
    assert d.verdict == "insufficient_data"


def test_non_finite_loss_is_diverging():
    h = healthy(8)
    h["loss"][-1] = math.nan
    d = diagnose(history(**h), ctx())
    assert d.verdict == "diverging"
    assert d.primary_cause == "learning_rate_too_high"


def test_findings_sorted_and_primary_cause_is_the_most_confident():
    n = 12
    h = history(
        train_eval_loss=ramp(0.6, -0.05, n),
        val_loss=[0.8, 0.7, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1],
        train_eval_accuracy=ramp(0.8, 0.015, n),
        val_accuracy=flat(0.7, n),
    )
    d = diagnose(h, ctx())
    confidences = [f.confidence for f in d.findings]
    assert confidences == sorted(confidences, reverse=True)
    assert d.primary_cause == "overfitting" == d.findings[0].cause
    assert {"overfitting", "plateau"} <= causes(d)
    assert d.verdict == "stagnating"


OVERFIT = dict(
    train_eval_accuracy=flat(0.95, 6),
    val_accuracy=[0.65, 0.7, 0.7, 0.7, 0.7, 0.7],
    train_eval_loss=ramp(0.6, -0.05, 6),
    val_loss=[0.6, 0.5, 0.52, 0.54, 0.56, 0.6],
)


def test_param_override_changes_the_outcome():
    h = history(**OVERFIT)
    assert "overfitting" in causes(diagnose(h, ctx(), rules=["overfitting"]))
    d = diagnose(h, ctx(), params={"overfitting": {"min_gap": 0.3}}, rules=["overfitting"])
    assert d.findings == [] and d.verdict == "healthy"


def test_rules_subset_runs_only_those():
    d = diagnose(history(**healthy()), ctx(), rules=["plateau", "overfitting"])
    assert {a.rule for a in d.abstentions} <= {"plateau", "overfitting"}


@pytest.mark.parametrize(
    "params, rules, needle",
    [
        ({"nope": {}}, None, "'nope'"),
        ({"overfitting": {"ratio_treshold": 0.2}}, None, "'ratio_treshold'"),
        ({"overfitting": {"ratio_threshold": "high"}}, None, "ratio_threshold"),
        ({"plateau": {"patience": -1}}, None, "patience"),
        (None, ["overfiting"], "'overfiting'"),
    ],
)
def test_bad_overrides_raise_value_error_naming_them(params, rules, needle):
    with pytest.raises(ValueError, match=needle):
        diagnose(history(**healthy()), ctx(), params=params, rules=rules)


def test_every_rule_is_documented():
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id and rule.reference and rule.causes
        assert rule.__doc__ and "Reference" in rule.__doc__
        for name, field in rule.Params.model_fields.items():
            assert field.description, f"{rule_id}.{name} has no description"


def test_remedy_by_id():
    h = history(**OVERFIT)
    d = diagnose(h, ctx({"optimizer": {"learning_rate": 1e-3}}), rules=["overfitting"])
    remedy = remedy_by_id(d, "increase_dropout")
    assert remedy is not None and remedy.patch == {"regularization": {"dropout": 0.5}}
    assert remedy_by_id(d, "no_such_remedy") is None


def test_diagnosis_round_trips_as_json():
    d = diagnose(history(**healthy()), ctx())
    assert Diagnosis.model_validate_json(d.model_dump_json()) == d


def test_history_out_of_order_is_sorted():
    records = history(**healthy())
    assert diagnose(list(reversed(records)), ctx(class_counts_train=BALANCED)).verdict == "healthy"


def test_worker_rows_with_extra_keys_are_accepted():
    r = EpochRecord.model_validate({"epoch": 1, "loss": 0.5, "epoch_seconds": 3.2, "val_recall": {"a": None}})
    assert r.loss == 0.5 and r.val_recall == {"a": None}


def test_ten_thousand_epochs():
    n = 10_000
    records = [
        EpochRecord(
            epoch=i,
            loss=1 / (1 + i),
            accuracy=min(0.99, 0.5 + i / 20000),
            train_eval_loss=1 / (1 + i),
            train_eval_accuracy=min(0.99, 0.5 + i / 20000),
            val_loss=1.02 / (1 + i) + 0.01 * (i % 7 == 0),
            val_accuracy=min(0.99, 0.49 + i / 20000),
            learning_rate=1e-3 if i < 5000 else 1e-4,
            update_ratio_head=1e-3,
            nonfinite_batches=0,
        )
        for i in range(n)
    ]
    d = diagnose(records, ctx(class_counts_train=BALANCED))
    assert d.epochs_analysed == n
    assert d.verdict in {"healthy", "stagnating"}
