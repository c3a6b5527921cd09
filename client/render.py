"""How the `plateau` CLI shows epochs, events, jobs and diagnoses on a terminal."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from client.sdk import AnalysisRead, EpochRead, JobRead, LineageRead, LineageStep, ServerEvent

EPOCH_HEADER = f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'val_loss':>9} {'val_acc':>8} {'lr':>9} {'sec':>6}"


def _num(value: float | None, width: int, spec: str) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:>{width}{spec}}"


def epoch_line(row: EpochRead) -> str:
    return (
        f"{row.epoch:>5} {_num(row.loss, 8, '.4f')} {_num(row.accuracy, 9, '.4f')} {_num(row.val_loss, 9, '.4f')} "
        f"{_num(row.val_accuracy, 8, '.4f')} {_num(row.learning_rate, 9, '.2e')} {_num(row.epoch_seconds, 6, '.1f')}"
    )


def epoch_summary(row: EpochRead) -> str:
    def f(v: float | None, spec: str = ".4f") -> str:
        return "—" if v is None else format(v, spec)

    return (
        f"loss {f(row.loss)} acc {f(row.accuracy)} val_loss {f(row.val_loss)} "
        f"val_acc {f(row.val_accuracy)} lr {f(row.learning_rate, '.2e')}"
    )


def event_line(event: ServerEvent) -> str:
    data = event.data if isinstance(event.data, dict) else {}
    if event.event == "state":
        arrow = f"{data.get('from_status') or '∅'} → {data.get('to_status')}"
        return f"state: {arrow}" + (f" ({data['reason']})" if data.get("reason") else "")
    return f"{event.event}: {data.get('reason') or ''}".rstrip(": ")


def when(ts: datetime | None) -> str | None:
    return None if ts is None else f"{ts:%Y-%m-%d %H:%M:%S %Z}".strip()


def job_label(job: JobRead) -> str:
    return f"{job.name or 'job'} {str(job.id)[:8]}"


def print_job_summary(console: Console, job: JobRead) -> None:
    console.print(f"job {job.id} [bold]{job.status}[/bold]" + (f"  {escape(job.name)}" if job.name else ""))
    if job.error:
        console.print(f"  error: {escape(job.error)}")
    if job.stop_reason:
        console.print(f"  stop reason: {escape(job.stop_reason)}")


def print_diagnosis(console: Console, job_id: Any, diagnosis: AnalysisRead) -> None:
    head = f"verdict: [bold]{diagnosis.verdict}[/bold]"
    if diagnosis.primary_cause:
        head += f" — primary cause: [bold]{escape(diagnosis.primary_cause)}[/bold]"
    console.print(head + f" ({diagnosis.epochs_analysed} epochs analysed)")
    console.print(escape(diagnosis.summary))
    for finding in diagnosis.findings:
        console.print(
            f"\n[bold]{escape(finding.cause)}[/bold] (rule {escape(finding.rule)}, "
            f"confidence {finding.confidence:.2f}): {escape(finding.summary)}"
        )
        if finding.epochs:
            console.print(f"  epochs: {', '.join(map(str, finding.epochs))}")
        for remedy in finding.remedies:
            patch = f"  patch {json.dumps(remedy.patch)}" if remedy.patch else ""
            console.print(f"  - {escape(remedy.id)}: {escape(remedy.text)}{escape(patch)}")
    for pre in diagnosis.pre_training:
        console.print(f"before training: {escape(str(pre.get('summary') or pre))}")
    if diagnosis.abstentions:
        console.print(
            "\nabstained: " + "; ".join(f"{a.rule} ({a.reason})" for a in diagnosis.abstentions), markup=False
        )
    remedies = [r.id for f in diagnosis.findings for r in f.remedies if r.patch]
    if remedies:
        console.print(f"\nnext: plateau fork {job_id} --apply {remedies[0]}", markup=False)


def _gain(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def round_header(step: LineageStep) -> str:
    """One line announcing a lineage step: the root, or a round with the remedy it applied."""
    if not step.round:
        return f"── root {step.job_id} ({step.name or 'job'})"
    remedy = "+".join(step.remedies) or "patch"
    changes = ", ".join(patch_changes(step.patch, step.parent_patch_values))
    return f"── round {step.round}: {step.cause or 'no cause'} → {remedy}: {changes} (job {step.job_id})"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} files" if all(isinstance(v, str) for v in value) else f"{len(value)} items"
    return "—" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def patch_changes(patch: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """ "learning_rate 1e-06 → 0.0001" for every field a patch sets, with the parent's value it replaced."""
    lines = []
    for key, value in patch.items():
        old = before.get(key) if isinstance(before, dict) else None
        if isinstance(value, dict) and (old is None or isinstance(old, dict)):
            lines += patch_changes(value, old or {})
        else:
            lines.append(f"{key} {_value(old)} → {_value(value)}")
    return lines


def lineage_table(lineage: LineageRead) -> Table:
    """One short row per job; what each round changed is printed under the table (print_lineage), so the table
    fits an 80-column terminal without folding any cell."""
    table = Table(
        title=f"lineage of {lineage.root_id} ({lineage.metric})",
        title_justify="left",
        box=None,  # no rules: the columns fit 80 without folding a cell
        header_style="bold underline",
    )
    for column, justify in (
        ("round", "right"),
        ("job", "left"),
        ("status", "left"),
        ("epochs", "right"),
        ("best", "right"),
        ("gain", "right"),
        ("vs parent", "left"),
        ("start", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)
    for step in lineage.steps:
        keep = lineage.best_job_id is not None and step.job_id == lineage.best_job_id
        table.add_row(
            "—" if step.round is None else str(step.round),
            str(step.job_id)[:8],
            step.status,
            str(step.epochs),
            "—" if step.best is None else f"{step.best:.4f}" + ("*" if keep else ""),
            _gain(step.gain),
            (step.comparison or {}).get("direction", "—") if step.round else "",
            step.start or ("" if not step.round else "—"),
        )
    return table


def round_lines(step: LineageStep) -> list[str]:
    """What a round did and what came of it, one short line each."""
    remedy = "+".join(step.remedies) or "patch"
    lines = [f"round {step.round}: {step.cause or 'no cause'} → {remedy}"]
    lines += [f"    {change}" for change in patch_changes(step.patch, step.parent_patch_values)]
    evidence = step.evidence or {}
    warm = evidence.get("warm_start")
    if warm:
        lines.append(
            f"    warm start from job {warm['from_job'][:8]} ({warm['checkpoint']}): {warm['epochs_saved']} epochs saved"
        )
    if evidence.get("learning_rate_from") == "range_test":
        lines.append(f"    rate from the range test (suggested {evidence['suggested_lr']:.3g})")
    comparison = step.comparison or {}
    if comparison:
        test = comparison.get("test")
        p = comparison.get("p_better") if comparison.get("direction") != "worse" else comparison.get("p_worse")
        detail = f", p={p:.3g}" if p is not None else ""
        lines.append(f"    {comparison.get('direction')} than its parent ({test}{detail})")
    lines.append(f"    verdict {step.diagnosis.verdict}")
    return lines


def print_lineage(console: Console, lineage: LineageRead) -> None:
    console.print(lineage_table(lineage))
    for step in lineage.steps:
        if step.round:
            for line in round_lines(step):
                console.print(line, markup=False, highlight=False)
    if lineage.best_job_id is not None:
        keep = next(s for s in lineage.steps if s.job_id == lineage.best_job_id)
        where = "the root" if keep.round == 0 else f"round {keep.round}" if keep.round else "a manual fork"
        console.print(
            f"keep job {lineage.best_job_id}: {where}, {lineage.metric} {lineage.best:.4f}",
            markup=False,
            highlight=False,
        )
    for wait in lineage.waiting_on:
        console.print(
            f"waiting on {wait.probe} ({wait.status}), job {wait.job_id}",  # fits 80 columns
            markup=False,
            highlight=False,
        )
    ap = lineage.autopilot
    if ap is not None:
        state = ap.state if ap.state == "active" else f"ended: [bold]{ap.end_reason}[/bold]"
        console.print(
            f"autopilot {state} after {ap.rounds_done} of {ap.config.max_rounds} rounds"
            + (f" ({escape(ap.end_detail)})" if ap.end_detail else "")
        )
