"""Hand-built histories for the analysis tests."""

from __future__ import annotations

from analysis import EpochRecord, JobContext, diagnose


def history(**columns: list) -> list[EpochRecord]:
    """Records from equal-length columns, e.g. history(loss=[...], val_loss=[...]); epochs count from 0."""
    n = max(len(v) for v in columns.values())
    return [EpochRecord(epoch=i, **{k: v[i] for k, v in columns.items() if i < len(v)}) for i in range(n)]


def ctx(spec: dict | None = None, **kw) -> JobContext:
    return JobContext(spec=spec or {}, **kw)


def ramp(start: float, step: float, n: int) -> list[float]:
    return [round(start + step * i, 6) for i in range(n)]


def flat(value: float, n: int) -> list[float]:
    return [value] * n


def healthy(n: int = 12) -> dict[str, list]:
    """Both accuracies rising, losses falling together, inference-mode train close to validation."""
    return dict(
        loss=ramp(1.2, -0.06, n),
        accuracy=ramp(0.45, 0.04, n),
        train_eval_loss=ramp(1.0, -0.05, n),
        train_eval_accuracy=ramp(0.5, 0.04, n),
        val_loss=ramp(1.02, -0.05, n),
        val_accuracy=ramp(0.49, 0.04, n),
        learning_rate=flat(1e-3, n),
        update_ratio_head=flat(1e-3, n),
        nonfinite_batches=flat(0, n),
    )


def causes(diagnosis) -> set[str]:
    return {f.cause for f in diagnosis.findings}


def run(rule: str, h, spec: dict | None = None, params: dict | None = None, **context):
    """Run one rule; returns its finding with `cause`, its only finding, its abstention, or None when quiet."""
    d = diagnose(h, ctx(spec, **context), rules=[rule], params={rule: params} if params else None)
    if d.abstentions:
        return d.abstentions[0]
    return d.findings[0] if d.findings else None


def find(rule: str, cause: str, h, spec: dict | None = None, params: dict | None = None, **context):
    """The finding with `cause` from one rule, or None."""
    d = diagnose(h, ctx(spec, **context), rules=[rule], params={rule: params} if params else None)
    return next((f for f in d.findings if f.cause == cause), None)


def counts(k: int, per_class: int) -> dict[str, int]:
    """Class counts of k balanced classes."""
    return {f"c{i}": per_class for i in range(k)}


def concave(start: float, end: float, n: int, rate: float = 0.35) -> list[float]:
    """A saturating learning curve from `start` towards `end`: each epoch closes `rate` of the remaining distance."""
    return [round(end - (end - start) * (1 - rate) ** i, 4) for i in range(n)]
