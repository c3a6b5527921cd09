"""One diagnosis' read-only view of the history: columns are extracted once and shared by all rules."""

from __future__ import annotations

from math import isfinite, log, sqrt
from operator import attrgetter, itemgetter

from analysis.compare import gt, le
from analysis.probes import parse as parse_probes
from analysis.records import JobContext
from analysis.series import Series, median
from contract.epoch import EpochRecord
from contract.lr_cuts import cut_epochs
from contract.resolved import ResolvedSpec, train_eval_size


class View:
    def __init__(self, history: list[EpochRecord], context: JobContext):
        records = list(history)
        epochs = list(map(attrgetter("epoch"), records))
        if not all(map(le, epochs, epochs[1:])):
            records.sort(key=attrgetter("epoch"))
            epochs = list(map(attrgetter("epoch"), records))
        self.records = records
        self.epochs = epochs
        self.context = context
        self.spec = ResolvedSpec(context.spec)
        self.n = len(records)
        self._cache: dict[tuple[str, bool], Series] = {}
        self._cuts: list[int] | None = None
        self._dicts: list[dict] | None = None
        self.probes = parse_probes(context.probes)

    def series(self, name: str, finite: bool = True) -> Series:
        """Recorded values of `name`; with finite=True NaN/inf are dropped as well. Cached; do not mutate."""
        if (name, finite) not in self._cache:
            self._load(name)
        return self._cache[(name, finite)]

    def _load(self, name: str) -> None:
        # Everything here runs at C speed (map/sum/comprehensions): histories can be 10,000 epochs long.
        if self._dicts is None:
            self._dicts = [vars(r) for r in self.records]  # pydantic keeps field values in __dict__
        column = list(map(itemgetter(name), self._dicts))
        try:
            total = sum(column)  # one pass that detects both None (TypeError) and NaN/inf (non-finite total)
            raw = Series(name, self.epochs, column)
        except TypeError:
            missing = column.count(None)
            raw = Series(name) if missing == len(column) else _keep(name, self.epochs, column, lambda v: v is not None)
            total = sum(raw.values)
        self._cache[(name, False)] = raw
        self._cache[(name, True)] = raw if isfinite(total) else _keep(name, raw.epochs, raw.values, isfinite)

    def has(self, name: str) -> bool:
        return len(self.series(name)) > 0

    def pick(self, *names: str) -> Series | None:
        """The first of `names` that was recorded (e.g. inference-mode train loss before Keras' loss)."""
        for name in names:
            if self.has(name):
                return self.series(name)
        return None

    def paired(self, a: Series, b: Series) -> tuple[list[int], list[float], list[float]]:
        """Epochs where both series have a value, with both values."""
        if a.epochs == b.epochs:
            return a.epochs, a.values, b.values
        other = dict(zip(b.epochs, b.values))
        common = [(e, x, other[e]) for e, x in zip(a.epochs, a.values) if e in other]
        return [c[0] for c in common], [c[1] for c in common], [c[2] for c in common]

    def lr_cuts(self) -> list[int]:
        """Epochs at which the LR was cut: the context's list plus drops seen in `learning_rate`."""
        if self._cuts is None:
            lr = self.series("learning_rate")
            self._cuts = sorted(set(self.context.lr_reductions).union(cut_epochs(lr.epochs, lr.values)))
        return list(self._cuts)

    def last_with(self, name: str):
        """The value of a structured field (val_recall, confusion…) at the last epoch that recorded it."""
        for r in reversed(self.records):
            v = getattr(r, name)
            if v is not None:
                return r.epoch, v
        return None

    def update_ratio(self, window: int) -> float | None:
        """The largest median per-step ‖ΔW‖/‖W‖ of the last `window` epochs over the parts that train (the head,
        and the base when unfrozen); None when none was recorded."""
        names = ["update_ratio_head"] + ([] if self.spec.base_frozen else ["update_ratio_base"])
        medians = [median(self.series(n).tail(window)) for n in names if self.has(n)]
        return max(medians) if medians else None

    def penalty_share(self) -> float | None:
        """The weight penalty's share of the inference-mode training loss (Keras' loss if that is all there is), at
        the latest epoch that recorded both."""
        reg, loss = self.series("regularization_loss"), self.pick("train_eval_loss", "loss")
        if not reg or not loss:
            return None
        _, r, total = self.paired(reg, loss)
        return r[-1] / total[-1] if r and total[-1] > 0 else None

    def sample_size(self, name: str) -> int | None:
        """How many images an accuracy was measured on: the validation set for val_accuracy, the training subset for
        train_eval_accuracy, the training set for Keras' accuracy; None when the counts are unknown."""
        c = self.context
        if name.startswith("val_"):
            n = sum((c.class_counts_val or {}).values())
            if not n:
                support = self.last_with("val_support")
                n = sum(support[1].values()) if support else 0
            return n or None
        n = sum((c.class_counts_train or {}).values())
        return (train_eval_size(n) if name.startswith("train_eval") else n) or None

    def resolution(self, name: str, floor: float) -> float:
        """The smallest change of an accuracy that is more than one or two images flipping: max(floor, 1.5 / n)."""
        n = self.sample_size(name)
        return max(floor, 1.5 / n) if n else floor

    def noise(self, name: str, p: float, floor: float, z: float = 2.0) -> float:
        """z binomial standard errors of an accuracy near `p` measured on this many images (at least `floor`): a
        swing smaller than this is sampling noise."""
        n = self.sample_size(name)
        return max(floor, z * sqrt(max(p * (1 - p), 0.0) / n)) if n else floor

    def wild_start(self, factor: float, first: int) -> dict | None:
        """A data loss (weight penalty taken out) at or above `factor` × ln K in the first `first` epochs: the first
        steps were so large they made the model confidently wrong (a model that knows nothing scores ln K). Keras'
        running `loss` is used only without a penalty, since the penalty changes within the epoch."""
        k = self.num_classes
        if not k or k < 2:
            return None
        reg_series = self.series("regularization_loss")
        reg = dict(zip(reg_series.epochs, reg_series.values))
        bound = factor * log(k)
        names = ("val_loss", "train_eval_loss") + (("loss",) if not any(reg.values()) else ())
        for name in names:
            s = self.series(name)
            for e, v in zip(s.epochs[:first], s.values[:first]):
                if v - reg.get(e, 0.0) >= bound:
                    return {
                        "start_loss": v,
                        "start_loss_signal": name,
                        "start_loss_epoch": e,
                        "chance_loss": round(log(k), 4),
                    }
        return None

    def accuracy_gap_se(self, train_acc: float, val_acc: float) -> float:
        """Standard error of train_eval_accuracy − val_accuracy from binomial sampling: the validation set's size and
        the training subset's (`contract.resolved.train_eval_size`); 0 when the sizes are unknown."""
        n_val, n_train = self.sample_size("val_accuracy"), self.sample_size("train_eval_accuracy")
        var = (val_acc * (1 - val_acc) / n_val if n_val else 0.0) + (
            train_acc * (1 - train_acc) / n_train if n_train else 0.0
        )
        return sqrt(max(var, 0.0))

    def low_accuracy_bar(self, fraction: float, fallback: float) -> float:
        """Accuracy below which a model has learned little of what it could, for K classes: 1/K + fraction × (1 −
        1/K) (0.66 for 4 classes and 0.6 for 10 at fraction 0.55); `fallback` when K is unknown."""
        return self.chance_bar(fraction) or fallback

    def chance_bar(self, near: float) -> float | None:
        """Accuracy at or below which a model is near chance: 1/K + near × (1 − 1/K); None without K."""
        k = self.num_classes
        return None if not k or k < 2 else 1 / k + near * (1 - 1 / k)

    def near_chance(self, near: float, window: int, loss_tol: float = 0.02) -> bool:
        """Nothing learned in the latest `window` epochs, on the training subset and on validation alike: accuracy near
        chance, or a data loss (penalty taken out) still within `loss_tol` of ln K, the loss of uniform predictions,
        whatever the argmax of near-uniform outputs happens to score."""
        bar = self.chance_bar(near)
        train = self.pick("train_eval_accuracy", "accuracy")
        if bar is None or not train or len(train) < window:
            return False
        chance_loss = log(self.num_classes)
        val = self.series("val_accuracy")
        train_at_chance = all(le(a, bar) for a in train.tail(window)) or self._uniform(
            "train_eval_loss", chance_loss, loss_tol, window
        )
        val_at_chance = not (val and gt(max(val.tail(window)), bar)) or self._uniform(
            "val_loss", chance_loss, loss_tol, window
        )
        return train_at_chance and val_at_chance

    def _uniform(self, name: str, chance_loss: float, tol: float, window: int) -> bool:
        loss, reg = self.series(name), self.series("regularization_loss")
        if len(loss) < window:
            return False
        penalty = dict(zip(reg.epochs, reg.values))
        return all(
            abs(v - penalty.get(e, 0.0) - chance_loss) <= tol * chance_loss
            for e, v in zip(loss.epochs[-window:], loss.tail(window))
        )

    @property
    def num_classes(self) -> int | None:
        c = self.context
        for counts in (c.class_counts_train, c.class_counts_val):
            if counts:
                return len(counts)
        for name in ("val_recall", "val_support", "confusion"):
            found = self.last_with(name)
            if found and found[1]:
                return len(found[1])
        return None


def _keep(name: str, epochs: list[int], values: list, ok) -> Series:
    kept = [(e, v) for e, v in zip(epochs, values) if ok(v)]
    return Series(name, [e for e, _ in kept], [v for _, v in kept])
