"""Following work live: one job's event stream, or an autopilot lineage round by round, until it ends."""

from __future__ import annotations

import time

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.console import EXIT_JOB_FAILED, EXIT_OK, emit, err, out
from client.render import (
    EPOCH_HEADER,
    epoch_line,
    epoch_summary,
    event_line,
    job_label,
    print_diagnosis,
    print_job_summary,
    print_lineage,
    round_header,
)
from client.sdk import AnalysisRead, EpochRead, JobRead, PlateauClient, PlateauConnectionError, PlateauError


def watch(client: PlateauClient, job: JobRead, as_json: bool) -> int:
    """Follow the job's event stream until it ends, then print its diagnosis. 1 unless it succeeded."""
    if as_json:
        for event in client.events(job.id):
            emit({"event": event.event, "id": event.id, "data": event.data}, indent=None)
    else:
        console = out()
        total = job.spec.get("epochs") if isinstance(job.spec.get("epochs"), int) else None
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task(escape(job_label(job)), total=total, metrics=job.status)
            progress.console.print(EPOCH_HEADER, markup=False)
            for event in client.events(job.id):
                if event.event == "epoch":
                    row = EpochRead.model_validate(event.data)
                    progress.console.print(epoch_line(row), markup=False)
                    progress.update(task, completed=row.epoch, metrics=epoch_summary(row))
                elif event.event != "end":  # findings stand out: the cause appeared, changed or cleared
                    style = "bold yellow" if event.event == "finding" else "dim"
                    progress.console.print(event_line(event), markup=False, style=style)
    final = client.job(job.id)
    try:
        diagnosis: AnalysisRead | None = client.analysis(job.id)
    except PlateauError as exc:
        if isinstance(exc, PlateauConnectionError):
            raise
        diagnosis = None
        err().print(f"no diagnosis: {escape(exc.message)}")
    if as_json:
        emit(
            {
                "event": "result",
                "job": final.model_dump(mode="json"),
                "analysis": diagnosis.model_dump(mode="json") if diagnosis else None,
            },
            indent=None,
        )
    else:
        console = out()
        console.print()
        print_job_summary(console, final)
        if diagnosis is not None:
            print_diagnosis(console, final.id, diagnosis)
    return EXIT_OK if final.status == "succeeded" else EXIT_JOB_FAILED


def watch_lineage(client: PlateauClient, root: JobRead, as_json: bool, poll: float = 1.0) -> int:
    """Follow an autopilot lineage round by round (a header per round, a line per epoch) until it ends, then print
    the lineage table. 1 when the lineage was cancelled."""
    console = out()
    shown = 0
    while True:
        lineage = client.lineage(root.id)
        if shown < len(lineage.steps):
            step = lineage.steps[shown]
            shown += 1
            if as_json:
                emit({"event": "round", **step.model_dump(mode="json")}, indent=None)
            else:
                console.print(round_header(step), markup=False, style="bold")
                console.print(EPOCH_HEADER, markup=False)
            for row in client.follow_metrics(step.job_id, poll=poll):
                if as_json:
                    emit({"event": "epoch", "job_id": str(step.job_id), **row.model_dump(mode="json")}, indent=None)
                else:
                    console.print(epoch_line(row), markup=False)
            continue
        if lineage.autopilot is None or lineage.autopilot.state != "active":
            break
        time.sleep(poll)
    final = client.lineage(root.id)
    if as_json:
        emit({"event": "result", "lineage": final.model_dump(mode="json")}, indent=None)
    else:
        console.print()
        print_lineage(console, final)
    cancelled = final.autopilot is not None and final.autopilot.end_reason == "cancelled"
    return EXIT_JOB_FAILED if cancelled else EXIT_OK
