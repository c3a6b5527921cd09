"""Where training reports to. The worker's sink writes SQL; tests can collect in memory."""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    def class_counts(self, counts: dict[str, dict[str, int]]) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def event(self, kind: str, reason: str, data: dict[str, Any] | None = None) -> None: ...

    def predictions(self, stored: dict[str, Any]) -> None:
        """The best epoch's validation predictions so far (contract.predictions), replacing earlier ones."""


class MemorySink:
    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.rows: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []
        self.best_predictions: dict[str, Any] | None = None

    def class_counts(self, counts: dict[str, dict[str, int]]) -> None:
        self.counts = counts

    def epoch(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]

    def event(self, kind: str, reason: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, reason, data))

    def predictions(self, stored: dict[str, Any]) -> None:
        self.best_predictions = stored
