"""What every rule is: an id, documented parameters with defaults, a public reference, and a check."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from analysis.findings import Abstention, Finding
from analysis.view import View


class Params(BaseModel):
    """Base of every rule's parameters: unknown names are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule:
    id: ClassVar[str]
    reference: ClassVar[str]
    causes: ClassVar[tuple[str, ...]]
    Params: ClassVar[type[Params]]
    judges_progress: ClassVar[bool] = True  # a "healthy" verdict needs at least one such rule to have judged

    def min_epochs(self, p: Params) -> int:
        return 2

    def check(self, view: View, p: Params) -> list[Finding] | Abstention:
        raise NotImplementedError

    def params(self, overrides: dict | None = None) -> Params:
        """Defaults with `overrides` applied; ValueError naming the rule and the bad parameter."""
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise ValueError(f"parameters of rule {self.id!r} must be an object, got {type(overrides).__name__}")
        unknown = sorted(set(overrides) - set(self.Params.model_fields))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))} for rule {self.id!r}; "
                f"known: {', '.join(self.Params.model_fields)}"
            )
        try:
            return self.Params(**overrides)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"bad parameter for rule {self.id!r}: {problems}") from None

    def run(self, view: View, p: Params) -> list[Finding] | Abstention:
        need = self.min_epochs(p)
        if view.n < need:
            return Abstention(rule=self.id, reason=f"insufficient data: needs {need} epochs, have {view.n}")
        return self.check(view, p)

    def abstain_missing(self, *missing: str) -> Abstention:
        return Abstention(rule=self.id, reason=f"missing signals: {', '.join(missing)}", missing=list(missing))
