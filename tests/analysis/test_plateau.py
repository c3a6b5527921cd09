from functools import partial

from analysis import RULES, Abstention
from analysis.rules.plateau import replay_early_stopping
from tests.analysis import builders
from tests.analysis.builders import history

run = partial(builders.run, "plateau")

DOWN = [1.0, 0.9, 0.8, 0.7, 0.6]


def test_fires_after_patience_epochs_without_improvement():
    f = run(history(val_loss=DOWN + [0.65] * 5))
    assert f.cause == "plateau"
    assert f.observed["best_epoch"] == 4 and f.observed["epochs_since_best"] == 5
    assert f.epochs == [4, 5, 6, 7, 8, 9]
    assert 0 < f.confidence <= 0.5  # a symptom: causal findings outrank it


def test_quiet_one_epoch_short_of_patience():
    assert run(history(val_loss=DOWN + [0.65] * 4)) is None


def test_quiet_while_improving():
    assert run(history(val_loss=[1.0 - 0.05 * i for i in range(10)])) is None


def test_min_delta_decides_what_counts_as_improvement():
    h = history(val_loss=[1.0 - 0.001 * i for i in range(10)])
    assert run(h) is None
    assert run(h, params={"min_delta": 0.01}).observed["best_epoch"] == 0


def test_auto_mode_maximises_accuracy():
    h = history(val_accuracy=[0.5, 0.6, 0.7, 0.69, 0.68, 0.7, 0.66, 0.65])
    f = run(h, params={"monitor": "val_accuracy", "patience": 5})
    assert f.thresholds["mode"] == "max" and f.observed["best"] == 0.7 and f.observed["best_epoch"] == 2


def test_follows_the_jobs_early_stopping_unless_overridden():
    spec = {"callbacks": {"early_stopping": {"monitor": "val_loss", "patience": 2}}}
    h = history(val_loss=[1.0, 0.8, 0.85, 0.9])
    assert run(h, spec).thresholds["patience"] == 2
    assert isinstance(run(h, spec, params={"patience": 5}), Abstention)
    assert run(h, spec, params={"follow_spec": False, "patience": 2}).cause == "plateau"


def test_reports_lr_cuts_from_context_and_from_learning_rate():
    h = history(val_loss=DOWN + [0.65] * 5, learning_rate=[1e-3] * 7 + [1e-4] * 3)
    f = run(h, lr_reductions=[3])
    assert f.observed["lr_cuts"] == [3, 7]
    assert f.observed["learning_rate"] == 1e-4
    assert "2 learning-rate cut(s) so far, 1 since the best epoch" in f.summary


def test_abstains_without_the_monitored_metric():
    a = run(history(loss=[1.0] * 8))
    assert isinstance(a, Abstention) and a.missing == ["val_loss"] and "val_loss" in a.reason


def test_insufficient_data():
    a = run(history(val_loss=DOWN))
    assert a.reason == "insufficient data: needs 6 epochs, have 5"


def test_replay_matches_keras_semantics():
    # patience 0 stops at the first non-improving epoch, never at epoch 0
    r = replay_early_stopping([0, 1, 2], [1.0, 0.9, 0.95], "min", 0.0, 0)
    assert r.stop_now and r.first_stop == 2 and r.best_epoch == 1
    # min_delta: an improvement must beat best by more than min_delta
    r = replay_early_stopping([0, 1, 2], [1.0, 0.95, 0.97], "min", 0.06, 1)
    assert r.best_epoch == 0 and r.first_stop == 1
    # baseline: improvements that do not beat it keep the wait counting
    r = replay_early_stopping([0, 1, 2, 3], [1.0, 0.9, 0.8, 0.85], "min", 0.0, 3, baseline=0.5)
    assert r.wait == 4 and r.stop_now
    # start_from_epoch: earlier epochs are skipped
    r = replay_early_stopping([0, 1, 2], [0.1, 1.0, 0.9], "min", 0.0, 0, start_from_epoch=1)
    assert r.best == 0.9 and not r.stop_now


def test_rule_is_registered():
    assert RULES["plateau"].Params().patience == 5


def test_nan_epochs_count_as_not_improving():
    f = run(history(val_loss=DOWN + [float("nan")] * 5))
    assert f.observed["best_epoch"] == 4 and f.observed["wait"] == 5
