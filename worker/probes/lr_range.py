"""Learning-rate range test (Smith 2017; fastai's `lr_find`): raise the rate exponentially every step on a copy of
the trainable part, record the loss, and read where it falls fastest and where it diverges."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from worker.probes import steps
from worker.probes.budget import Budget

START_LR, END_LR, NUM_IT = 1e-7, 10.0, 100
BETA = 0.98  # fastai's smoothing
TOO_LOW_FACTOR = 10
SKIP_BEGIN = 10  # Lightning's skip_begin
MIN_FALL = 0.02  # a smoothed loss that never falls by 2 % gives no usable range
DIVERGE = 4.0  # stop once the smoothed loss passes 4x its minimum (fastai, Lightning)


def rates(start: float = START_LR, end: float = END_LR, num_it: int = NUM_IT) -> list[float]:
    return [start * (end / start) ** (i / max(1, num_it - 1)) for i in range(num_it)]


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """Exponential moving average, bias-corrected as fastai does."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**i))
    return out


def steepest(lrs: list[float], smoothed: list[float], skip_begin: int = SKIP_BEGIN) -> int | None:
    """Index of the steepest fall of the smoothed loss against log10(rate) (Lightning's suggestion, which also
    skips the first steps: the moving average is still settling there)."""
    skip = skip_begin if len(smoothed) > skip_begin + 3 else 0
    if len(smoothed) - skip < 3:
        return None
    grads = {
        i: (smoothed[i + 1] - smoothed[i - 1]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i - 1]))
        for i in range(max(1, skip), len(smoothed) - 1)
    }
    i = min(grads, key=grads.__getitem__)
    return i if grads[i] < 0 else None


def valley(smoothed: list[float]) -> tuple[int, int, int] | None:
    """fastai's valley: the longest descending run of the smoothed loss, (start, end, suggestion), the suggestion
    being fastai's point about halfway into it."""
    n = len(smoothed)
    if n < 3:
        return None
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - lds[max_end]
    if max_end == max_start:
        return None
    sections = (max_end - max_start) / 3
    return max(0, max_start), max_end, max(0, max_start) + int(sections) + int(sections / 2)


def verdict(job_rate: float, usable: list[float] | None) -> str:
    """Above the rate of the lowest loss is too high. Each rate of the sweep trains a single step, so a rate a
    little below where the loss starts to fall may still train over many steps: only ten times below is too low."""
    if not usable:
        return "unknown"
    lo, hi = usable
    if job_rate > hi:
        return "too_high"
    if job_rate < lo / TOO_LOW_FACTOR:
        return "too_low"
    return "within_range"


def summarize(lrs: list[float], raw: list[float], *, job_rate: float, part: str, truncated: bool) -> dict[str, Any]:
    """The result from the rates tried and their raw losses (pure: tested on known curves)."""
    cut = next((i for i, loss in enumerate(raw) if not math.isfinite(loss)), len(raw))
    diverged = cut < len(raw)
    return read(lrs[:cut], smooth(raw[:cut]), job_rate=job_rate, part=part, truncated=truncated, diverged=diverged)


def read(
    lrs: list[float], smoothed: list[float], *, job_rate: float, part: str, truncated: bool, diverged: bool = False
) -> dict[str, Any]:
    """The result from the rates tried and their smoothed losses: also how a recorded sweep is read again."""
    steep = steepest(lrs, smoothed)
    vall = valley(smoothed)
    usable = None
    if smoothed:
        best = min(range(len(smoothed)), key=smoothed.__getitem__)
        diverged = diverged or smoothed[-1] > DIVERGE * smoothed[best]
        ref = smoothed[min(SKIP_BEGIN, len(smoothed) - 1)]  # the average has settled by then
        fall = ref - smoothed[best]
        settled = best > SKIP_BEGIN or len(smoothed) <= SKIP_BEGIN + 3  # a lowest loss among the first steps is noise
        if fall > MIN_FALL * abs(ref) and settled:
            # Smith: from where the loss starts to fall (here: the start of the descent that stays a tenth of its
            # whole fall below where it began) to where it is lowest; the settling first steps' noise is no fall
            start = best
            while start > SKIP_BEGIN and smoothed[start - 1] <= ref - 0.1 * fall:
                start -= 1
            usable = [lrs[start], lrs[best]]
    # the steepest point of a loss that never fell is noise, not a measured rate: no range, no suggestion
    suggested = lrs[steep] if steep is not None and usable else None
    kind = verdict(job_rate, usable)
    words = {
        "too_high": "above the range where the loss falls",
        "too_low": "more than ten times below the range where the loss falls",
        "within_range": "within that range",
        "unknown": "and no range where the loss falls could be read",
    }[kind]
    if suggested is not None and usable:
        statement = (
            f"the {part}'s loss falls fastest near {suggested:.1g} and keeps falling from {usable[0]:.1g} to "
            f"{usable[1]:.1g}; this job uses {job_rate:g}, {words}"
        )
    elif lrs:
        statement = f"the {part}'s loss did not fall over rates {lrs[0]:.1g}–{lrs[-1]:.1g}; this job uses {job_rate:g}"
    else:
        statement = f"no step of the range test ran; this job uses {job_rate:g}"
    if truncated:
        statement += f" (budget ran out after {len(lrs)} steps)"
    return {
        "part": part,
        "rates": lrs,
        "losses": smoothed,
        "suggested_rate": suggested,
        "valley_rate": lrs[vall[2]] if vall is not None else None,
        "usable_range": usable,
        "job_rate": job_rate,
        "job_rate_verdict": kind,
        "diverged": diverged,
        "truncated": truncated,
        "statement": statement,
    }


def sweep(
    train_steps: Callable[[list[float], list[tuple[Any, Any]]], list[float]],
    batches: Iterator[tuple[Any, Any]],
    *,
    budget: Budget,
    start: float = START_LR,
    end: float = END_LR,
    num_it: int = NUM_IT,
    per_call: int = 1,
) -> tuple[list[float], list[float]]:
    """One step per rate, `per_call` steps at a time (`train_steps(rates, batches)` returns their losses); stops at
    the end, on divergence, or when the budget runs out (checked between calls). Returns (rates, losses). Steps a
    call ran past a stop are dropped: they changed only the weights after it, so what is kept is as if each step
    had been run on its own."""
    tried, losses, avg, low = [], [], 0.0, math.inf
    todo = rates(start, end, num_it)
    while todo and not budget.over():
        chunk, todo = todo[: max(1, per_call)], todo[max(1, per_call) :]
        for lr, loss in zip(chunk, train_steps(chunk, [next(batches) for _ in chunk]), strict=True):
            loss = float(loss)
            tried.append(lr)
            losses.append(loss)
            if not math.isfinite(loss):
                return tried, losses
            i = len(tried)
            avg = BETA * avg + (1 - BETA) * loss
            smoothed = avg / (1 - BETA**i)
            low = min(low, smoothed)
            if i > 5 and smoothed > DIVERGE * low:
                return tried, losses
    return tried, losses


def run(
    model,
    batches: Iterator,
    *,
    job_rate: float,
    part: str,
    budget: Budget,
    num_it: int = NUM_IT,
    per_call: int = steps.PER_CALL,
) -> dict[str, Any]:
    """The range test on `model`, a compiled copy the caller owns: its weights change, the job's do not. `per_call`
    steps run in one call of a compiled loop (`steps.Steps`): many on a small head, one on a whole model."""
    lrs, losses = sweep(steps.Steps(model), batches, budget=budget, num_it=num_it, per_call=per_call)
    return summarize(lrs, losses, job_rate=job_rate, part=part, truncated=budget.truncated)
