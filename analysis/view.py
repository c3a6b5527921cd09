"""One diagnosis' read-only view of the history: columns are extracted once and shared by all rules."""

from __future__ import annotations

from analysis.records import EpochRecord, JobContext
from analysis.series import Series, is_finite
from analysis.spec import SpecView


class View:
    def __init__(self, history: list[EpochRecord], context: JobContext):
        records = list(history)
        if any(a.epoch > b.epoch for a, b in zip(records, records[1:])):
            records.sort(key=lambda r: r.epoch)
        self.records = records
        self.context = context
        self.spec = SpecView(context.spec)
        self.n = len(records)
        self._cache: dict[tuple[str, bool], Series] = {}

    def series(self, name: str, finite: bool = True) -> Series:
        """Recorded values of `name`; with finite=True NaN/inf are dropped as well."""
        key = (name, finite)
        if key not in self._cache:
            s = Series(name)
            for r in self.records:
                v = getattr(r, name)
                if v is not None and (not finite or is_finite(v)):
                    s.epochs.append(r.epoch)
                    s.values.append(float(v))
            self._cache[key] = s
        return self._cache[key]

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
        other = dict(zip(b.epochs, b.values))
        epochs, xs, ys = [], [], []
        for e, x in zip(a.epochs, a.values):
            if e in other:
                epochs.append(e)
                xs.append(x)
                ys.append(other[e])
        return epochs, xs, ys

    def lr_cuts(self) -> list[int]:
        """Epochs at which the LR was cut: the context's list plus drops seen in `learning_rate`."""
        cuts = set(self.context.lr_reductions)
        lr = self.series("learning_rate")
        for e, prev, cur in zip(lr.epochs[1:], lr.values, lr.values[1:]):
            if cur < prev * (1 - 1e-6):
                cuts.add(e)
        return sorted(cuts)

    def last_with(self, name: str):
        """The value of a structured field (val_recall, confusion…) at the last epoch that recorded it."""
        for r in reversed(self.records):
            v = getattr(r, name)
            if v is not None:
                return r.epoch, v
        return None

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
