"""Probe results as evidence: the measured statements a finding may cite. Pure: reads `contract.probes` shapes.

The worker runs the probes and records their results; a rule reads them here like it reads epoch rows, e.g.
`lr_verdict(results)` is "too_high" when the job's rate lies above the range where the loss fell."""

from __future__ import annotations

from typing import Any

from contract.probes import LabelCheckResult, LinearProbeResult, LrRangeResult, MemorizationResult

_SHAPES = {
    "lr_range": LrRangeResult,
    "memorization": MemorizationResult,
    "linear_probe": LinearProbeResult,
    "label_check": LabelCheckResult,
}


def parsed(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The results a rule can use, validated; an unknown or malformed one is left out, never raised."""
    out = {}
    for name, raw in (results or {}).items():
        shape = _SHAPES.get(name)
        if shape is None or not raw:
            continue
        try:
            out[name] = shape.model_validate(raw)
        except ValueError:
            continue
    return out


def statements(results: dict[str, dict[str, Any]]) -> list[str]:
    """One measured sentence per probe, in a fixed order, for a finding's evidence."""
    found = parsed(results)
    return [found[name].statement for name in _SHAPES if name in found]


def lr_verdict(results: dict[str, dict[str, Any]]) -> str | None:
    """ "too_high" | "too_low" | "within_range" | "unknown" from the range test; None without one."""
    test = parsed(results).get("lr_range")
    return None if test is None else test.job_rate_verdict


def optimisation_fault(results: dict[str, dict[str, Any]]) -> bool | None:
    """True when the model could not fit a small subset with regularization off (an optimisation or wiring
    fault, not a generalisation one); None without a memorization probe."""
    probe = parsed(results).get("memorization")
    return None if probe is None or probe.truncated and not probe.fitted else not probe.fitted


def suggested_rate(results: dict[str, dict[str, Any]]) -> float | None:
    """The rate where the range test's loss fell fastest, for a remedy to take its value from; None without a
    range test that read one."""
    test = parsed(results).get("lr_range")
    return None if test is None else test.suggested_rate
