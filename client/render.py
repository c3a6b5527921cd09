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
    return f"── round {step.round}: {step.cause or 'no cause'} → {remedy} {json.dumps(step.patch)} (job {step.job_id})"


def lineage_table(lineage: LineageRead) -> Table:
    table = Table(title=f"lineage of {lineage.root_id} ({lineage.metric})", title_justify="left")
    # numbers and ids never wrap; causes and remedies fold onto more lines in a narrow terminal
    for column, justify, fixed in (
        ("round", "right", True),
        ("job", "left", True),
        ("status", "left", True),
        ("cause", "left", False),
        ("remedy", "left", False),
        ("epochs", "right", True),
        ("best", "right", True),
        ("gain", "right", True),
        ("verdict", "left", False),
    ):
        table.add_column(column, justify=justify, no_wrap=fixed, overflow="fold")
    for step in lineage.steps:
        table.add_row(
            "—" if step.round is None else str(step.round),
            str(step.job_id)[:8],
            step.status,
            escape(step.cause or ""),
            escape("+".join(step.remedies)),
            str(step.epochs),
            "—" if step.best is None else f"{step.best:.4f}",
            _gain(step.gain),
            escape(step.diagnosis.verdict),
        )
    return table


def print_lineage(console: Console, lineage: LineageRead) -> None:
    console.print(lineage_table(lineage))
    ap = lineage.autopilot
    if ap is not None:
        state = ap.state if ap.state == "active" else f"ended: [bold]{ap.end_reason}[/bold]"
        console.print(
            f"autopilot {state} after {ap.rounds_done} of {ap.config.max_rounds} rounds"
            + (f" ({escape(ap.end_detail)})" if ap.end_detail else "")
        )
