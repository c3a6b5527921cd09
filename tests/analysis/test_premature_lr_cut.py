from functools import partial

from analysis import Abstention
from tests.analysis import builders
from tests.analysis.builders import flat, history

run = partial(builders.run, "premature_lr_cut")
N = 10
SPEC = {"callbacks": {"reduce_lr_on_plateau": {"patience": 2}}}
RISING = [0.3, 0.4, 0.5, 0.6]  # +0.10 per epoch before the cut
SLOW = [0.62, 0.61, 0.63, 0.62, 0.63, 0.62]  # no significant rise after it


def cut_at(epoch: int, val: list | None = None, n: int = N, train: list | None = None) -> list:
    lr = [1e-3] * epoch + [1e-4] * (n - epoch)
    val = val or (RISING + SLOW)
    return history(learning_rate=lr, val_accuracy=val[:n], train_eval_accuracy=train or [v + 0.05 for v in val[:n]])


def test_early_cut_followed_by_a_slowdown():
    f = run(cut_at(4), SPEC, planned_epochs=20)
    assert f.cause == "premature_lr_cut"
    assert f.observed["first_cut_epoch"] == 4 and f.observed["warmup_limit_epoch"] == 6
    assert f.observed["gain_per_epoch_before"] == 0.1 and f.observed["gain_per_epoch_after"] < 0.05
    assert f.observed["reduce_lr_patience"] == 2 and f.epochs == list(range(3, N))
    assert [r.id for r in f.remedies] == ["lengthen_reduce_lr_patience"]
    assert f.remedies[0].patch == {"callbacks": {"reduce_lr_on_plateau": {"patience": 5, "cooldown": 2}}}


def test_a_short_patience_adds_confidence():
    short = run(cut_at(4), SPEC, planned_epochs=20)
    default = run(cut_at(4), {"callbacks": {"reduce_lr_on_plateau": {"patience": 4}}}, planned_epochs=20)
    assert default.cause == "premature_lr_cut" and short.confidence > default.confidence
    assert default.remedies[0].patch == {"callbacks": {"reduce_lr_on_plateau": {"patience": 8, "cooldown": 2}}}


def test_late_cut_is_quiet():
    val = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.81, 0.8, 0.81, 0.8]  # learning stops at the cut
    assert run(cut_at(7, val), SPEC, planned_epochs=20) is None  # after max(3, 0.3 × 20) = 6
    assert run(cut_at(6, val), SPEC, planned_epochs=20).observed["first_cut_epoch"] == 6


def test_warmup_is_at_least_warmup_epochs():
    # 0.3 × 6 planned epochs is 1, so the 3-epoch floor decides
    stall = [0.3, 0.4, 0.5, 0.5, 0.51, 0.5, 0.51]
    assert run(cut_at(3, stall, n=7), SPEC, planned_epochs=6).observed["warmup_limit_epoch"] == 3
    assert run(cut_at(4, stall, n=7), SPEC, planned_epochs=6) is None


def test_cut_without_a_slowdown_is_quiet():
    steady = [0.1 * i for i in range(N)]
    assert run(cut_at(4, steady), SPEC, planned_epochs=20) is None
    # exactly half the earlier rate is not below `slowdown` × it
    half = [0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    assert run(cut_at(4, half), SPEC, planned_epochs=20) is None


def test_cut_while_accuracy_was_not_rising_is_quiet():
    assert run(cut_at(4, [0.5, 0.5, 0.5, 0.5] + SLOW), SPEC, planned_epochs=20) is None


def test_converged_run_is_quiet():
    assert run(cut_at(4, train=[0.5, 0.7, 0.9, 0.95] + flat(0.96, 6)), SPEC, planned_epochs=20) is None


def test_cuts_recorded_in_the_context_count():
    h = history(val_accuracy=RISING + SLOW, train_eval_accuracy=flat(0.6, N))
    assert isinstance(run(h, SPEC, planned_epochs=20), Abstention)  # no cut known, no learning rate recorded
    assert run(h, SPEC, planned_epochs=20, lr_reductions=[4]).observed["lr_cuts"] == [4]


def test_abstains_without_accuracy_when_there_was_a_cut():
    a = run(history(learning_rate=[1e-3, 1e-3, 1e-4, 1e-4, 1e-4]), SPEC)
    assert isinstance(a, Abstention) and a.missing == ["val_accuracy or train_eval_accuracy"]
    assert run(cut_at(2, n=3), SPEC).reason == "insufficient data: needs 4 epochs, have 3"


def test_users_own_cut_on_a_healthy_concave_curve_is_expected():
    """Misfire: ReduceLROnPlateau (patience 2) cut a healthy concave curve early and it kept learning; it was
    called premature_lr_cut 0.75. The rise after the cut is significant on 48 validation images: no finding."""
    val = [0.45, 0.6, 0.7, 0.76, 0.79, 0.81, 0.83, 0.84, 0.85, 0.86, 0.875, 0.88]
    h = history(learning_rate=[1e-3] * 4 + [1e-4] * 8, val_accuracy=val, train_eval_accuracy=[v + 0.03 for v in val])
    counts = {"a": 12, "b": 12, "c": 12, "d": 12}
    assert run(h, SPEC, planned_epochs=20, class_counts_val=counts, class_counts_train=counts) is None


def test_a_gain_within_the_noise_of_a_small_validation_set_is_no_learning():
    """After the cut accuracy moves by one image in 20: within binomial noise, so learning did stop."""
    val = [0.3, 0.4, 0.5, 0.6, 0.6, 0.65, 0.6, 0.65, 0.6, 0.65]
    counts = {"a": 10, "b": 10}
    f = run(cut_at(4, val), SPEC, planned_epochs=20, class_counts_val=counts)
    assert f is not None and f.observed["val_images"] == 20


def test_one_epoch_after_the_cut_is_enough_when_asked():
    stall = [0.3, 0.4, 0.5, 0.6, 0.6]
    assert run(cut_at(4, stall, n=5), SPEC, planned_epochs=20, params={"after": 1}) is not None


def test_an_early_cut_in_a_ten_thousand_epoch_history_is_judged_quickly():
    import time

    n = 10_000
    val = [min(0.3 + 0.1 * i, 0.6) for i in range(4)] + [0.6 + 0.01 * ((i % 3) - 1) for i in range(n - 4)]
    t0 = time.perf_counter()
    f = run(cut_at(4, val, n=n), SPEC, planned_epochs=n)
    assert f is not None and time.perf_counter() - t0 < 2.0
