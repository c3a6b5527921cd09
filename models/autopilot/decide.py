"""The autopilot's choice for the next round, as a pure function of what the database holds."""

from __future__ import annotations

from dataclasses import dataclass

from analysis import Diagnosis, Remedy
from contract.autopilot import AutopilotSpec


@dataclass(frozen=True)
class End:
    reason: str
    detail: str


@dataclass(frozen=True)
class Fork:
    cause: str | None
    confidence: float | None  # None for a follow-up: it acts on the last round's measured gain, not on a finding
    remedy: Remedy
    follow_up: dict | None = None  # a follow-up's evidence (analysis.followup): why the last remedy goes further


def helped(*, forked: bool, gain: float | None, min_gain: float) -> bool:
    """Whether the last round's fork is a better place to go on from than its parent (no fork yet: yes)."""
    return not forked or (gain is not None and gain >= min_gain)


def next_step(
    config: AutopilotSpec,
    *,
    rounds_done: int,
    last_helped: bool,
    diagnosis: Diagnosis,
    tried: set[str],
    follow_up: tuple[Remedy, dict] | None = None,
    last_cause: str | None = None,
) -> End | Fork:
    """`diagnosis` is of the job the next fork would start from: the last child when it helped, else its parent.

    Candidates are the remedies of findings at or above min_confidence, most confident finding first and each
    finding's remedies in their (evidence-ranked) order, skipping remedies already tried on this lineage and
    advice with no spec change. When none is left and the last fork helped, `follow_up` (analysis.followup: another
    brake of the same finding, the same brake further, or more epochs) goes on with the same cause."""
    if rounds_done >= config.max_rounds:
        return End("max_rounds", f"{rounds_done} of {config.max_rounds} rounds done")
    confident = [f for f in diagnosis.findings if f.confidence >= config.min_confidence]
    if not (last_helped and diagnosis.verdict == "healthy"):
        for finding in confident:
            for remedy in finding.remedies:
                if remedy.patch and remedy.id not in tried:
                    return Fork(finding.cause, finding.confidence, remedy)
    if last_helped and follow_up is not None:
        remedy, evidence = follow_up
        return Fork(last_cause, None, remedy, evidence)
    if last_helped and diagnosis.verdict == "healthy":
        return End("healthy", diagnosis.summary)
    if not last_helped:
        return End("no_gain", f"the last remedy gained less than {config.min_gain:g} and no untried remedy is left")
    if not confident:
        best = max((f.confidence for f in diagnosis.findings), default=None)
        return End(
            "no_confident_cause",
            f"no finding at confidence ≥ {config.min_confidence:g}"
            + (f" (best {best:.2f})" if best is not None else f"; verdict {diagnosis.verdict}"),
        )
    return End("no_confident_cause", "every remedy of the confident findings was already tried")
