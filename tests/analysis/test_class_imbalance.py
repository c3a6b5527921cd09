from functools import partial

from analysis import Abstention, diagnose
from tests.analysis import builders
from tests.analysis.builders import ctx, flat, history

run = partial(builders.run, "class_imbalance")
SKEWED = {"a": 300, "b": 100}  # ratio 3: below SageMaker's 10, but b has 1.5× fewer images or more
GOOD_VAL = flat(0.75, 4)  # above the two-class chance bar 0.5 + 0.15 × 0.5 = 0.575


def recalls(*per_epoch: dict) -> list:
    return history(val_recall=list(per_epoch), val_accuracy=GOOD_VAL[: len(per_epoch)])


def test_counts_alone_before_training():
    f = run([], class_counts_train={"a": 1100, "b": 100})
    assert f.observed["signals"] == ["count_ratio"] and f.observed["count_ratio"] == 11
    assert f.remedies[0].patch == {"class_weight": "balanced"}
    assert "b" in f.summary
    assert run([], class_counts_train={"a": 1000, "b": 100}) is None


def test_pre_training_diagnosis_keeps_the_finding():
    d = diagnose([], ctx(class_counts_train={"a": 5000, "b": 10}))
    assert d.verdict == "insufficient_data" and d.primary_cause == "class_imbalance"


def test_persistent_low_recall_of_an_under_represented_class():
    h = recalls({"a": 0.9, "b": 0.5}, {"a": 0.9, "b": 0.29}, {"a": 0.92, "b": 0.2}, {"a": 0.95, "b": 0.25})
    f = run(h, class_counts_train=SKEWED)
    assert f.observed["signals"] == ["minority_recall"] and f.observed["low_recall_classes"] == ["b"]
    assert f.epochs == [1, 2, 3] and "b" in f.summary
    assert [r.id for r in f.remedies][0] == "balance_class_weights"


def test_recall_at_half_the_best_counts_as_low():
    h = recalls(*[{"a": 0.9, "b": 0.45}] * 3)  # above min_recall 0.3, but ≤ 0.5 × 0.9
    assert run(h, class_counts_train=SKEWED).observed["low_recall_classes"] == ["b"]
    assert run(recalls(*[{"a": 0.9, "b": 0.46}] * 3), class_counts_train=SKEWED) is None


def test_low_recall_must_persist():
    h = recalls({"a": 0.9, "b": 0.8}, {"a": 0.9, "b": 0.8}, {"a": 0.9, "b": 0.1}, {"a": 0.9, "b": 0.1})
    assert run(h, class_counts_train=SKEWED) is None
    assert run(h, class_counts_train=SKEWED, params={"persist": 2}).observed["low_recall_classes"] == ["b"]
    assert run(recalls({"a": 0.9, "b": 0.1}), class_counts_train=SKEWED) is None  # one epoch is not persistence


def test_low_recall_needs_validation_clearly_above_chance():
    low = [{"a": 0.95, "b": 0.1}] * 3
    at_chance = history(val_recall=low, val_accuracy=[0.75, 0.75, 0.57])
    assert run(at_chance, class_counts_train=SKEWED) is None
    assert run(history(val_recall=low), class_counts_train=SKEWED) is None  # no val_accuracy at all


def test_low_recall_of_a_well_represented_class_is_not_imbalance():
    h = recalls(*[{"a": 0.1, "b": 0.9}] * 3)  # the larger class is the one missed
    assert run(h, class_counts_train=SKEWED) is None
    h = recalls(*[{"a": 0.9, "b": 0.1}] * 3)
    assert run(h, class_counts_train={"a": 140, "b": 100}) is None  # b is not 1.5× smaller
    assert run(h, class_counts_train={"a": 150, "b": 100}) is not None


def test_balanced_counts_never_fire():
    h = recalls(*[{"a": 0.95, "b": 0.05}] * 4)
    assert run(h, class_counts_train={"a": 100, "b": 100}) is None
    # a model at chance predicting one class on balanced data is not imbalance either
    stuck = history(val_recall=[{"a": 1.0, "b": 0.0}] * 4, val_accuracy=flat(0.5, 4))
    assert run(stuck, class_counts_train={"a": 100, "b": 100}) is None


def test_recall_from_confusion_matrix():
    confusion = [[[9, 1], [8, 2]]] * 3  # rows = true class: a recalled 0.9, b 0.2
    f = run(history(confusion=confusion, val_accuracy=flat(0.7, 3)), class_counts_train=SKEWED)
    assert f.observed["low_recall_classes"] == ["b"] and f.observed["signals"] == ["minority_recall"]


def test_counts_and_recall_together_are_more_confident():
    h = recalls(*[{"a": 0.95, "b": 0.1}] * 3)
    both = run(h, class_counts_train={"a": 1100, "b": 100})
    assert both.observed["signals"] == ["count_ratio", "minority_recall"]
    assert both.confidence > run([], class_counts_train={"a": 1100, "b": 100}).confidence
    assert both.confidence > run(h, class_counts_train=SKEWED).confidence


def test_balanced_weights_not_suggested_twice():
    h = recalls(*[{"a": 0.95, "b": 0.1}] * 3)
    f = run(h, {"class_weight": "balanced"}, class_counts_train={"a": 2000, "b": 100})
    assert "balance_class_weights" not in [r.id for r in f.remedies]


def test_counts_alone_are_silent_with_balanced_class_weights():
    assert run([], {"class_weight": "balanced"}, class_counts_train={"a": 2000, "b": 100}) is None


def test_count_only_imbalance_never_judges_a_run():
    """Misfire: a job improving from 0.70 to 0.86 with class_weight balanced and 440:40 counts was stopped at epoch
    3 by a count-only class_imbalance at 0.8. Counts alone are a pre-training warning: with epochs recorded and
    even per-class recall there is no finding, no stagnating verdict and nothing for on_stagnation to stop on."""
    counts = {"a": 440, "b": 40}
    improving = history(
        val_accuracy=[0.70, 0.79, 0.86],
        train_eval_accuracy=[0.72, 0.8, 0.88],
        val_recall=[{"a": 0.7, "b": 0.68}, {"a": 0.8, "b": 0.77}, {"a": 0.87, "b": 0.84}],
    )
    for spec in ({"class_weight": "balanced"}, {}):
        assert run(improving, spec, class_counts_train=counts) is None
        d = diagnose(improving, ctx({**spec, "on_stagnation": {"action": "stop"}}, class_counts_train=counts))
        assert "class_imbalance" not in {f.cause for f in d.findings} and d.verdict != "stagnating"


def test_abstains_without_training_counts():
    a = run(recalls(*[{"a": 0.95, "b": 0.1}] * 3), class_counts_val={"a": 300, "b": 100})
    assert isinstance(a, Abstention) and a.missing == ["class_counts_train"]


def test_ragged_confusion_matrix_does_not_raise():
    h = history(confusion=[[[1, 2], [3]]] * 3, val_accuracy=flat(0.9, 3))
    assert run(h, class_counts_train=SKEWED) is None
