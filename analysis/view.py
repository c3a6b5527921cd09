"""One diagnosis' read-only view of the history: columns are extracted once and shared by all rules."""

from __future__ import annotations

from math import isfinite
from operator import attrgetter, le

from analysis.records import EpochRecord, JobContext
from analysis.series import Series
from analysis.spec import SpecView


class View:
    def __init__(self, history: list[EpochRecord], context: JobContext):
        records = list(history)
        epochs = [r.epoch for r in records]
        if not all(map(le, epochs, epochs[1:])):
            records.sort(key=attrgetter("epoch"))
            epochs = [r.epoch for r in records]
        self.records = records
        self.epochs = epochs
        self.context = context
        self.spec = SpecView(context.spec)
        self.n = len(records)
        self._cache: dict[tuple[str, bool], Series] = {}
        self._cuts: list[int] | None = None

    def series(self, name: str, finite: bool = True) -> Series:
        """Recorded values of `name`; with finite=True NaN/inf are dropped as well. Cached; do not mutate."""
        key = (name, finite)
        if key not in self._cache:
            self._cache[key] = self._finite(name) if finite else self._recorded(name)
        return self._cache[key]

    def _recorded(self, name: str) -> Series:
        # C-level loops (map/zip/comprehensions): a 10,000-epoch history is read in well under a millisecond per column
        column = list(map(attrgetter(name), self.records))
        if None not in column:
            return Series(name, self.epochs, column)
        kept = [(e, v) for e, v in zip(self.epochs, column) if v is not None]
        return Series(name, [e for e, _ in kept], [v for _, v in kept])

    def _finite(self, name: str) -> Series:
        raw = self.series(name, finite=False)
        if isfinite(sum(raw.values)):  # a C-speed test that holds for nearly every history: no NaN/inf anywhere
            return raw
        kept = [(e, v) for e, v in zip(raw.epochs, raw.values) if isfinite(v)]
        return Series(name, [e for e, _ in kept], [v for _, v in kept])

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
            drops = [e for e, prev, cur in zip(lr.epochs[1:], lr.values, lr.values[1:]) if cur < prev * (1 - 1e-6)]
            self._cuts = sorted(set(self.context.lr_reductions).union(drops))
        return list(self._cuts)

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
