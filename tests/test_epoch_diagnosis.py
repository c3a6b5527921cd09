"""The diagnosis the worker runs after every epoch: finding events as causes appear, change and clear, and
on_stagnation stopping only on confident findings. Driven with the logs Keras hands the callback."""

from __future__ import annotations

from types import SimpleNamespace

from contract.spec import JobSpec
from tests.specs import small_spec
from worker.training.sink import MemorySink
from worker.training.stagnation import EpochDiagnosis

BALANCED = {"train": {"a": 40, "b": 40, "c": 40}, "val": {"a": 10, "b": 10, "c": 10}}


def at_chance(epoch: int) -> dict:
    return {
        "loss": 1.1,
        "accuracy": 0.33,
        "val_loss": 1.1,
        "val_accuracy": 0.33,
        "learning_rate": 1e-3,
        "train_eval_loss": 1.1,
        "train_eval_accuracy": 0.33,
        "update_ratio_head": 0.01,
    }


def learning(epoch: int) -> dict:
    acc = min(0.95, 0.5 + 0.1 * epoch)
    return {
        "loss": 1.0 - 0.05 * epoch,
        "accuracy": acc,
        "val_loss": 1.0 - 0.05 * epoch,
        "val_accuracy": acc,
        "learning_rate": 1e-3,
        "train_eval_loss": 1.0 - 0.05 * epoch,
        "train_eval_accuracy": acc,
        "update_ratio_head": 0.01,
    }


def callback(spec: dict) -> tuple[EpochDiagnosis, MemorySink]:
    sink = MemorySink()
    cb = EpochDiagnosis(JobSpec.model_validate(spec), BALANCED, sink)
    cb.set_model(SimpleNamespace(stop_training=False))  # what Keras does before fit
    return cb, sink


def findings(sink: MemorySink) -> list[dict]:
    return [data for kind, _, data in sink.events if kind == "finding"]


def test_a_finding_event_when_a_cause_appears_then_clears():
    spec = small_spec(epochs=10)  # a frozen random-init base, as the tests train
    cb, sink = callback(spec)
    for epoch in range(3):
        cb.on_epoch_end(epoch, at_chance(epoch))
    first = findings(sink)
    assert [f["cause"] for f in first] == ["base_too_frozen"] and first[0]["epoch"] == 3  # told after 3 epochs
    cb.on_epoch_end(3, at_chance(3))
    assert len(findings(sink)) == 1  # the same cause again is not a new event
    for epoch in range(4, 7):
        cb.on_epoch_end(epoch, learning(epoch))
    cleared = findings(sink)[-1]
    assert cleared["cleared"] == "base_too_frozen" and "cause" not in cleared
    assert cb.model.stop_training is False  # no on_stagnation policy: findings never stop the job


def test_on_stagnation_stops_only_at_its_confidence():
    spec = small_spec(epochs=10, on_stagnation={"action": "stop", "after_epochs": 3, "min_confidence": 1.0})
    cb, sink = callback(spec)
    for epoch in range(4):
        cb.on_epoch_end(epoch, at_chance(epoch))
    assert findings(sink) and max(f["confidence"] for f in findings(sink)) < 1.0
    assert cb.model.stop_training is False and cb.stop_reason() is None  # no finding is certain: 1.0 never stops
    spec["on_stagnation"]["min_confidence"] = 0.7
    cb, sink = callback(spec)
    for epoch in range(3):
        cb.on_epoch_end(epoch, at_chance(epoch))
    assert cb.model.stop_training is True
    assert cb.stop_reason().startswith("on_stagnation: not_learning found base_too_frozen")
    assert any(reason.startswith("on_stagnation stopped the job") for kind, reason, _ in sink.events)


def test_on_stagnation_rules_limit_what_may_stop():
    spec = small_spec(epochs=10, on_stagnation={"action": "stop", "after_epochs": 3, "rules": ["overfitting"]})
    cb, _ = callback(spec)
    for epoch in range(5):
        cb.on_epoch_end(epoch, at_chance(epoch))
    assert cb.model.stop_training is False  # not_learning fired, but only overfitting may stop this job


def test_count_only_imbalance_never_stops_an_improving_job():
    """440:40 counts with class_weight balanced and on_stagnation stop: improving from 0.70 to 0.86 with even
    per-class recall, the job runs on (a count-only class_imbalance at 0.8 once stopped it at epoch 3)."""
    spec = small_spec(epochs=10, class_weight="balanced", on_stagnation={"action": "stop", "after_epochs": 1})
    sink = MemorySink()
    cb = EpochDiagnosis(JobSpec.model_validate(spec), {"train": {"a": 440, "b": 40}, "val": {"a": 40, "b": 40}}, sink)
    cb.set_model(SimpleNamespace(stop_training=False))
    for epoch, acc in enumerate([0.70, 0.79, 0.86]):
        logs = {**learning(epoch), "val_accuracy": acc, "train_eval_accuracy": acc + 0.02, "accuracy": acc}
        cb.on_epoch_end(epoch, {**logs, "val_recall": {"a": acc + 0.01, "b": acc - 0.01}})
    assert cb.model.stop_training is False and cb.stop_reason() is None
    assert "class_imbalance" not in {f.get("cause") for f in findings(sink)}


class ProbingSink(MemorySink):
    """The worker's sink queues probes on a stall; this one records the request."""

    def __init__(self) -> None:
        super().__init__()
        self.stalls: list[tuple[int, list[str], int]] = []

    def stalled(self, epoch: int, probes: list[str], budget_seconds: int) -> None:
        self.stalls.append((epoch, probes, budget_seconds))


def test_the_first_stall_asks_for_the_specs_probes_once():
    spec = small_spec(epochs=10, diagnosis={"probes": ["lr_range", "label_check"], "budget_seconds": 45})
    sink = ProbingSink()
    cb = EpochDiagnosis(JobSpec.model_validate(spec), BALANCED, sink)
    cb.set_model(SimpleNamespace(stop_training=False))
    cb.on_epoch_end(0, learning(0))
    assert sink.stalls == []
    for epoch in range(1, 6):
        cb.on_epoch_end(epoch, at_chance(epoch))
    assert sink.stalls == [(findings(sink)[0]["epoch"], ["lr_range", "label_check"], 45)]
    for off in ({"probes": "off"}, None):
        spec = small_spec(epochs=10, **({"diagnosis": off} if off else {}))
        sink = ProbingSink()
        cb = EpochDiagnosis(JobSpec.model_validate(spec), BALANCED, sink)
        cb.set_model(SimpleNamespace(stop_training=False))
        for epoch in range(5):
            cb.on_epoch_end(epoch, at_chance(epoch))
        assert findings(sink) and sink.stalls == []
