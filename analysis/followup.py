"""What to do after a remedy the lineage goes on from (it helped, or its gain was within noise but not below
zero): loosen the other brakes its finding named, carry it further, or train longer.

A healthy verdict says nothing held the run back; it does not say the run was finished. A run made by loosening a
brake on fitting (a learning rate raised, a penalty or dropout lowered) that is still climbing at its last epoch
tells two things: the direction was right, and the run ran out of epochs before it settled. The next step is to
loosen the same brake further where the records show it still holds, and otherwise to train longer. Remedies that
add a brake (a lower learning rate, more regularisation) are never pushed further: a run still improving after one
is a reason to stop tightening, so it only gets more epochs. A learning rate is also raised again on a run that
settled when its measured steps are still far below a healthy job's (the first raise was capped).
"""

from __future__ import annotations

from analysis import remedies as R
from analysis.findings import Remedy
from analysis.records import JobContext
from analysis.remedies.optimize import HEALTHY_UPDATE_RATIO
from analysis.rules.underfitting import UnderfittingParams
from analysis.view import View
from contract.autopilot import higher_is_better
from contract.epoch import EpochRecord

WINDOW = 3  # epochs at the end of the run in which the improvement must show
MIN_DELTA = 0.01  # an accuracy gain below this (or below 1.5 images of the validation set) is not an improvement
MIN_LOSS_DELTA = 0.01  # the same for a loss, relative to its earlier best
PENALTY_STILL_HOLDS = 0.1  # a weight penalty still this share of the loss keeps holding the fit back
RELEASES = ("increase_learning_rate", "reduce_l2", "reduce_dropout")
LOSS_OF = {"val_accuracy": "val_loss", "accuracy": "loss"}


def still_improving(view: View, metric: str = "val_accuracy", window: int = WINDOW) -> dict | None:
    """Evidence that `metric` was still improving at the end of the run, or None.

    Improving: the best epoch is one of the last two, and the best of the last `window` epochs beats the best
    before them by more than measurement noise."""
    s = view.series(metric)
    if len(s) <= window:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    values = [sign * v for v in s.values]
    best_at = max(range(len(values)), key=lambda i: (values[i], i))
    earlier, recent = max(values[:-window]), max(values[-window:])
    delta = view.resolution(metric, MIN_DELTA) if sign > 0 else MIN_LOSS_DELTA * abs(earlier)
    if best_at < len(values) - 2 or recent - earlier <= delta:
        return None
    return {
        "metric": metric,
        "best_epoch": s.epochs[best_at],
        "last_epoch": s.last_epoch,
        "gain_over_last_epochs": round(sign * (recent - earlier), 4),
        "window": window,
        "min_delta": round(delta, 4),
    }


def _further(view: View, remedy_id: str, learning: dict | None) -> tuple[Remedy, dict] | None:
    """The same brake loosened once more, when the records show it still holds, with the evidence.

    A raised learning rate is raised again whenever the measured steps are still under half a healthy step, even
    on a run that settled: its first raise was capped (×100 a round) and says so by the ratio it left behind. A
    penalty or dropout lowered is lowered again only while the run was still learning (`learning`), since no
    record measures how much they still hold it back beyond the penalty's share of the loss."""
    spec = view.spec
    if remedy_id == "increase_learning_rate":
        ratio = view.update_ratio(WINDOW)
        if ratio is None:
            remedy = R.increase_learning_rate(spec, 3) if learning else None
            return (remedy, learning) if remedy else None
        if ratio * 2 > HEALTHY_UPDATE_RATIO:
            return None  # steps are already about the size of a healthy job's: a higher rate risks divergence
        remedy = R.increase_learning_rate(spec, R.step_factor(ratio, 2, 10, 3))
        evidence = {"update_ratio": ratio, "healthy_update_ratio": HEALTHY_UPDATE_RATIO, **(learning or {})}
        return (remedy, evidence) if remedy else None
    if not learning:
        return None
    if remedy_id == "reduce_l2":
        share = view.penalty_share()
        remedy = R.reduce_l2(spec) if share is not None and share >= PENALTY_STILL_HOLDS else None
        return (remedy, {"penalty_share": round(share, 4), **learning}) if remedy else None
    if remedy_id == "reduce_dropout":
        remedy = R.reduce_dropout(spec)
        return (remedy, learning) if remedy else None
    return None


def _untouched(view: View, remedy_id: str) -> tuple[Remedy, dict] | None:
    """A brake the motivating finding named that no round has loosened yet, while the run still has it set at a
    level the underfitting rule calls strong (or, for the learning rate, steps under half a healthy one)."""
    spec, strong = view.spec, UnderfittingParams()
    if remedy_id == "increase_learning_rate":
        return _further(view, remedy_id, None)
    if remedy_id == "reduce_dropout" and spec.dropout >= strong.strong_dropout:
        remedy = R.reduce_dropout(spec)
        return (remedy, {"dropout": spec.dropout, "strong_dropout": strong.strong_dropout}) if remedy else None
    if remedy_id == "reduce_l2":
        share = view.penalty_share()
        if spec.l2 >= strong.strong_l2 or (share is not None and share >= strong.penalty_share):
            remedy = R.reduce_l2(spec)
            return (remedy, {"l2": spec.l2, "strong_l2": strong.strong_l2, "penalty_share": share}) if remedy else None
    return None


def follow_up(
    history: list[EpochRecord],
    context: JobContext,
    *,
    applied: list[str],
    named: list[str] = (),
    tried: set[str] = frozenset(),
    metric: str = "val_accuracy",
) -> tuple[Remedy, dict] | None:
    """The next remedy for a run that `applied` made, with the evidence; None when nothing says to go further.

    In order: another brake that the finding behind the fork named (`named`, its remedy ids) and no round has
    loosened yet (`tried`), where the run still has it set strong; the same brake loosened further where its
    records show it still holds (see `_further`); more epochs. "Still learning" means `metric` still improving,
    or (for an accuracy, which a small validation set measures in coarse steps) its loss still falling. More
    epochs need the metric itself still improving: a loss that falls while the accuracy stays put is no promise
    that longer training pays."""
    view = View(history, context)
    on_metric = still_improving(view, metric)
    on_loss = still_improving(view, LOSS_OF[metric]) if metric in LOSS_OF else None  # None as well when unrecorded
    for remedy_id in named:
        if remedy_id in RELEASES and remedy_id not in tried and remedy_id not in applied:
            found = _untouched(view, remedy_id)
            if found is not None:
                return found
    for remedy_id in applied:
        if remedy_id in RELEASES:
            found = _further(view, remedy_id, on_metric or on_loss)
            if found is not None:
                return found
    if on_metric:
        return R.train_longer(view.spec), on_metric
    return None
