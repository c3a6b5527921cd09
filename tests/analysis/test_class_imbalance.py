from functools import partial

from analysis import Abstention, diagnose
from tests.analysis import builders
from tests.analysis.builders import ctx, history

run = partial(builders.run, "class_imbalance")


def test_counts_alone_before_training():
    f = run([], class_counts_train={"a": 1100, "b": 100})
    assert f.observed["signals"] == ["count_ratio"] and f.observed["count_ratio"] == 11
    assert f.remedies[0].patch == {"class_weight": "balanced"}
    assert "b" in f.summary
    assert run([], class_counts_train={"a": 1000, "b": 100}) is None


def test_pre_training_diagnosis_keeps_the_finding():
    d = diagnose([], ctx(class_counts_train={"a": 5000, "b": 10}))
    assert d.verdict == "insufficient_data" and d.primary_cause == "class_imbalance"


def test_low_recall_class():
    f = run(history(val_recall=[{"a": 0.9, "b": 0.29}]), class_counts_train={"a": 300, "b": 100})
    assert f.observed["low_recall_classes"] == ["b"] and f.epochs == [0]
    assert run(history(val_recall=[{"a": 0.9, "b": 0.3}]), class_counts_train={"a": 300, "b": 100}) is None


def test_low_recall_of_a_majority_class_is_weak_evidence():
    minority = run(history(val_recall=[{"a": 0.9, "b": 0.1}]), class_counts_train={"a": 300, "b": 100})
    majority = run(history(val_recall=[{"a": 0.1, "b": 0.9}]), class_counts_train={"a": 300, "b": 100})
    assert majority.confidence < minority.confidence


def test_recall_from_confusion_matrix():
    f = run(history(confusion=[[[9, 1], [8, 2]]]), class_counts_val={"a": 10, "b": 10})
    assert f.observed["val_recall"] == {"a": 0.9, "b": 0.2}


def test_val_accuracy_at_majority_share():
    counts = {"a": 80, "b": 20}
    f = run(history(val_accuracy=[0.79]), class_counts_val=counts)
    assert f.observed["signals"] == ["majority_accuracy"] and f.observed["majority_share"] == 0.8
    assert run(history(val_accuracy=[0.77]), class_counts_val=counts) is None


def test_balanced_set_at_chance_is_not_imbalance():
    assert run(history(val_accuracy=[0.5]), class_counts_val={"a": 50, "b": 50}) is None


def test_balanced_weights_not_suggested_twice():
    f = run([], {"class_weight": "balanced"}, class_counts_train={"a": 2000, "b": 100})
    assert "balance_class_weights" not in [r.id for r in f.remedies]


def test_abstains_without_counts_or_recall():
    a = run(history(val_accuracy=[0.5]))
    assert isinstance(a, Abstention) and len(a.missing) == 2
