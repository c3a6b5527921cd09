"""`plateau`: submit, watch, inspect, analyse, cancel and fork training jobs from a shell.

Exit codes: 0 ok; 1 a watched job ended failed or cancelled; 2 bad input (an invalid spec, option or
id); 3 not found; 4 the service could not be reached; 5 the service refused the request in the
current state (409 conflict, 429 limit reached); 6 any other error answer from the service.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import BaseModel
from rich.markup import escape
from rich.table import Table

from client.console import (  # noqa: F401 - the exit codes are part of this module's documented interface
    EXIT_BAD_INPUT,
    EXIT_CONFLICT,
    EXIT_CONNECTION,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SERVICE,
    emit,
    err,
    out,
)
from client.follow import watch, watch_lineage
from client.render import (
    EPOCH_HEADER,
    epoch_line,
    print_diagnosis,
    print_job_summary,
    print_lineage,
    when,
)
from client.sdk import (
    DEFAULT_URL,
    PlateauClient,
    PlateauConnectionError,
    PlateauError,
    field_name,
)
from contract.status import JOB_STATUSES

app = typer.Typer(
    name="plateau",
    help="Train image classifiers on a Plateau service and find out why they stall.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JobIdArg = Annotated[str, typer.Argument(metavar="ID", help="A job id.")]


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    timeout: float


class BadInput(Exception):
    pass


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="PLATEAU_URL", help="The service's base URL.")] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=["PLATEAU_TOKEN", "PLATEAU_API_KEY"],
            help="API key, sent as a bearer token.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer.")] = 30.0,
) -> None:
    ctx.obj = Settings(url=url, token=token, timeout=timeout)


def connect(ctx: typer.Context) -> PlateauClient:
    s: Settings = ctx.obj
    return PlateauClient(s.url, timeout=s.timeout, token=s.token)


def fail(code: int, message: str) -> NoReturn:
    err().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def exit_code(exc: PlateauError) -> int:
    if isinstance(exc, PlateauConnectionError):
        return EXIT_CONNECTION
    if exc.status_code == 404:
        return EXIT_NOT_FOUND
    if exc.status_code in (400, 413, 422):
        return EXIT_BAD_INPUT
    if exc.status_code in (409, 429):
        return EXIT_CONFLICT
    return EXIT_SERVICE


def handled(fn):
    """Turn SDK errors into a message on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BadInput as exc:
            fail(EXIT_BAD_INPUT, str(exc))
        except PlateauError as exc:
            if exc.field_errors:
                console = err()
                console.print(f"[red]error:[/red] invalid request ({exc.status_code}):")
                for e in exc.field_errors:
                    console.print(f"  {escape(field_name(e.get('loc', [])))}: {escape(str(e.get('msg')))}")
                raise typer.Exit(exit_code(exc)) from None
            fail(exit_code(exc), exc.message)
        except KeyboardInterrupt:
            err().print("interrupted; the job keeps running on the service")
            raise typer.Exit(130) from None

    return wrapper


# -- inputs ------------------------------------------------------------------------------------------------------------


def load_spec(path: str) -> dict[str, Any]:
    """A spec from a YAML or JSON file (`-` reads standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise BadInput(f"cannot read spec file {path}: {exc.strerror or exc}") from exc
    try:
        spec = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise BadInput(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}") from exc
    if not isinstance(spec, dict):
        raise BadInput(f"{path} must hold a mapping (the job spec), not {type(spec).__name__}")
    return spec


def parse_patch(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise BadInput(f"cannot read patch file {raw[1:]}: {exc.strerror or exc}") from exc
    try:
        patch = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"--patch is not valid JSON: {exc}") from exc
    if not isinstance(patch, dict):
        raise BadInput("--patch must be a JSON object (a merge patch on the spec)")
    return patch


def parse_params(raw: list[str] | None) -> dict[str, str]:
    params = {}
    for item in raw or []:
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            raise BadInput(f"--param {item!r}: expected RULE.NAME=VALUE, e.g. overfitting.ratio_threshold=0.2")
        params[key] = value
    return params


# -- output ------------------------------------------------------------------------------------------------------------


def report(made: BaseModel, message: str, *, as_json: bool, follow: Callable[[], int] | None = None) -> None:
    """The tail of every command that starts or changes something: with --json, what it made (unless a follow
    streams JSON instead), else one line; then, with --watch, follow the work live and exit with its outcome."""
    if as_json and follow is None:
        emit(made.model_dump(mode="json"))
        return
    if not as_json:
        out().print(message, markup=False)
    if follow is not None:
        raise typer.Exit(follow())


# -- commands ----------------------------------------------------------------------------------------------------------


def parse_target(text: str) -> dict[str, float]:
    """`val_accuracy=0.9` → {"val_accuracy": 0.9} (the metric is checked with the rest of the autopilot)."""
    metric, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return {metric.strip(): float(value)}
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected METRIC=VALUE, e.g. val_accuracy=0.9", param_hint="--target"
        ) from None


@app.command()
@handled
def submit(
    ctx: typer.Context,
    spec_file: Annotated[str, typer.Argument(metavar="SPEC", help="Job spec, .yaml/.yml or .json; - reads stdin.")],
    watch_: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow the job live, then print its diagnosis.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", "-k", help="Submitting again with this key returns the same job.")
    ] = None,
    autopilot: Annotated[
        int | None,
        typer.Option(
            "--autopilot",
            min=1,
            max=10,
            metavar="ROUNDS",
            help="Put the job under autopilot for at most ROUNDS forks; with --watch, follow the whole lineage.",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="METRIC=VALUE",
            help="With --autopilot: end the lineage once a job reaches this (e.g. val_accuracy=0.9).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job spec."""
    spec = load_spec(spec_file)
    config = {"max_rounds": autopilot, **({"target": parse_target(target)} if target else {})} if autopilot else None
    with connect(ctx) as client:
        job = client.submit(spec, idempotency_key=idempotency_key, autopilot=config)
        if watch_ and autopilot:
            message = f"submitted job {job.id} ({job.status}) under autopilot, {autopilot} round(s) at most"
            report(job, message, as_json=as_json, follow=lambda: watch_lineage(client, job, as_json))
        message = f"submitted job {job.id} ({job.status}): {job.links.self}"
        report(job, message, as_json=as_json, follow=(lambda: watch(client, job, as_json)) if watch_ else None)


@app.command()
@handled
def jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", "-s", help=" | ".join(JOB_STATUSES))] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many jobs.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    with connect(ctx) as client:
        items = list(client.jobs(status=status, limit=limit))
    if as_json:
        emit([j.model_dump(mode="json") for j in items])
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "STATUS", "EPOCHS", "CREATED"):
        table.add_column(column, no_wrap=True)
    table.add_column("NAME", overflow="fold")
    for j in items:
        table.add_row(
            str(j.id), j.status, str(j.spec.get("epochs", "")), f"{j.created_at:%Y-%m-%d %H:%M}", escape(j.name or "")
        )
    out().print(table)
    if not items:
        out().print("no jobs")


@app.command()
@handled
def show(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """Show one job: status, timings, lineage, events and its latest epoch."""
    with connect(ctx) as client:
        job = client.job(job_id)
        rows = client.metrics(job_id, after_epoch=None)
    if as_json:
        emit({**job.model_dump(mode="json"), "last_epoch": rows[-1].model_dump(mode="json") if rows else None})
        return
    console = out()
    print_job_summary(console, job)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for label, value in (
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("attempts", job.attempts),
        ("worker", job.worker_host),
        ("parent", job.parent_id),
        ("ancestors", ", ".join(map(str, job.ancestors))),
        ("children", ", ".join(map(str, job.children))),
        ("model", job.model_path),
    ):
        if value not in (None, ""):
            grid.add_row(label, escape(str(value)))
    grid.add_row("epochs", f"{len(rows)} of {job.spec.get('epochs', '?')}")
    console.print(grid)
    console.print("spec: " + json.dumps(job.spec, separators=(",", ":")), markup=False)
    if job.events:
        console.print("\nevents:")
        for e in job.events:
            what = f"{e.from_status or '∅'} → {e.to_status}" if e.kind == "state" else e.kind
            console.print(f"  {e.at:%Y-%m-%d %H:%M:%S}  {what}" + (f"  {e.reason}" if e.reason else ""), markup=False)
    if rows:
        console.print("\nlatest epoch:")
        console.print(EPOCH_HEADER, markup=False)
        console.print(epoch_line(rows[-1]), markup=False)


@app.command()
@handled
def metrics(
    ctx: typer.Context,
    job_id: JobIdArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new epochs until the job ends.")
    ] = False,
    after: Annotated[int | None, typer.Option("--after", min=0, help="Only epochs after this one.")] = None,
    poll: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between polls with --follow.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's epoch rows (with --json: a list, or one JSON object per line with --follow)."""
    with connect(ctx) as client:
        if not follow:
            rows = client.metrics(job_id, after_epoch=after)
            if as_json:
                emit([r.model_dump(mode="json") for r in rows])
                return
            console = out()
            console.print(EPOCH_HEADER, markup=False)
            for row in rows:
                console.print(epoch_line(row), markup=False)
            return
        console = out()
        if not as_json:
            console.print(EPOCH_HEADER, markup=False)
        for row in client.follow_metrics(job_id, poll=poll, after_epoch=after):
            if as_json:
                emit(row.model_dump(mode="json"), indent=None)
            else:
                console.print(epoch_line(row), markup=False)
        final = client.job(job_id)
    if not as_json:
        print_job_summary(console, final)
    raise typer.Exit(EXIT_OK if final.status == "succeeded" else EXIT_JOB_FAILED)


@app.command()
@handled
def analyze(
    ctx: typer.Context,
    job_id: JobIdArg,
    rule: Annotated[list[str] | None, typer.Option("--rule", "-r", help="Run only this rule (repeatable).")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Override a rule parameter: RULE.NAME=VALUE (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain why the job's validation metrics stall, with evidence and remedies."""
    params = parse_params(param)
    with connect(ctx) as client:
        diagnosis = client.analysis(job_id, rules=rule, params=params)
    if as_json:
        emit(diagnosis.model_dump(mode="json"))
        return
    print_diagnosis(out(), job_id, diagnosis)


@app.command()
@handled
def cancel(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """Cancel a queued job, or ask a running one to stop at its next batch."""
    with connect(ctx) as client:
        job = client.cancel(job_id)
    if job.status == "cancelled":
        report(job, f"job {job.id} cancelled", as_json=as_json)
    else:
        report(job, f"job {job.id} is {job.status}: cancel requested, it stops at its next batch", as_json=as_json)


@app.command()
@handled
def fork(
    ctx: typer.Context,
    job_id: JobIdArg,
    apply: Annotated[
        list[str] | None,
        typer.Option("--apply", "-a", metavar="REMEDY", help="A remedy id from the job's analysis (repeatable)."),
    ] = None,
    patch: Annotated[
        str | None, typer.Option("--patch", metavar="JSON", help="A JSON merge patch on the spec, or @file.json.")
    ] = None,
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="Follow the new job live.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue a new job from this one's spec with remedies and a patch applied."""
    body = parse_patch(patch)
    with connect(ctx) as client:
        child = client.fork(job_id, apply=apply or [], patch=body)
        message = f"forked job {child.id} ({child.status}) from {job_id}: {child.links.self}"
        report(child, message, as_json=as_json, follow=(lambda: watch(client, child, as_json)) if watch_ else None)


@app.command()
@handled
def lineage(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """The chain from the root: diagnosis, remedy and measured gain of every step, and the autopilot's state."""
    with connect(ctx) as client:
        found = client.lineage(job_id)
    if as_json:
        emit(found.model_dump(mode="json"))
    else:
        print_lineage(out(), found)


@app.command()
@handled
def autopilot(
    ctx: typer.Context,
    job_id: JobIdArg,
    rounds: Annotated[int, typer.Option("--rounds", "-r", min=1, max=10, help="Forks at most.")] = 3,
    metric: Annotated[str, typer.Option("--metric", help="val_accuracy, val_loss, accuracy or loss.")] = "val_accuracy",
    min_gain: Annotated[float, typer.Option("--min-gain", min=0.0, help="Smallest gain that counts as help.")] = 0.01,
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", min=0.0, max=1.0, help="Findings below this are not acted on.")
    ] = 0.7,
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="Follow the lineage live.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put an existing job under autopilot."""
    with connect(ctx) as client:
        ap = client.start_autopilot(
            job_id, max_rounds=rounds, metric=metric, min_gain=min_gain, min_confidence=min_confidence
        )
        follow = (lambda: watch_lineage(client, client.job(job_id), as_json)) if watch_ else None
        report(ap, f"autopilot {ap.id} on job {job_id}: {ap.state}", as_json=as_json, follow=follow)


@app.command()
@handled
def outcomes(
    ctx: typer.Context,
    metric: Annotated[str | None, typer.Option("--metric", help="Only outcomes measured on this metric.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measured effect of every remedy forked so far, per cause."""
    with connect(ctx) as client:
        found = client.remedy_outcomes(metric)
    if as_json:
        emit(found.model_dump(mode="json"))
        return
    table = Table(title="remedy outcomes", title_justify="left")
    for column in ("cause", "remedy", "metric", "forks", "measured", "improved", "median gain"):
        table.add_column(
            column, justify="right" if column in ("forks", "measured", "improved", "median gain") else "left"
        )
    for i in found.items:
        table.add_row(
            escape(i.cause or "—"),
            escape(i.remedy),
            i.metric,
            str(i.count),
            str(i.measured),
            "—" if i.improved_share is None else f"{i.improved_share:.0%}",
            "—" if i.median_gain is None else f"{i.median_gain:+.4f}",
        )
    out().print(table)


@app.command()
@handled
def probes(
    ctx: typer.Context,
    job_id: JobIdArg,
    run: Annotated[
        list[str] | None,
        typer.Option(
            "--run",
            "-r",
            metavar="PROBE",
            help="Queue this probe (repeatable): lr_range, memorization, linear_probe, label_check; or all.",
        ),
    ] = None,
    budget: Annotated[int | None, typer.Option("--budget", min=1, help="Seconds each probe may run.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the job's probes and what they measured; with --run, queue probes first."""
    with connect(ctx) as client:
        if run:
            names = None if "all" in run else run
            queued = client.run_probes(job_id, names, budget)
            if not as_json:
                out().print(f"queued: {', '.join(p.name for p in queued)}", markup=False)
        found = client.probes(job_id)
    if as_json:
        emit([p.model_dump(mode="json") for p in found])
        return
    table = Table(title=f"probes of job {job_id}", title_justify="left")
    for column in ("probe", "status", "trigger", "seconds", "measured"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for p in found:
        said = p.error or ((p.result or {}).get("statement") or "")
        seconds = "—" if p.duration_seconds is None else f"{p.duration_seconds:.1f}"
        table.add_row(p.name, p.status, p.trigger, seconds, escape(said))
    out().print(table)


@app.command("label-issues")
@handled
def label_issues(
    ctx: typer.Context,
    job_id: JobIdArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many suspects.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Training images whose label the latest label check suspects, most suspect first."""
    with connect(ctx) as client:
        found = list(client.label_issues(job_id, limit=limit))
    if as_json:
        emit([i.model_dump(mode="json") for i in found])
        return
    if not found:
        out().print(
            f"no label issues for job {job_id} (run `plateau probes {job_id} --run label_check` first)", markup=False
        )
        return
    table = Table(title=f"label issues of job {job_id}", title_justify="left")
    for column in ("#", "file", "given", "suspected", "score"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for i in found:
        table.add_row(str(i.n), escape(i.file), escape(i.given), escape(i.suspected), f"{i.score:.2f}")
    out().print(table)


if __name__ == "__main__":
    app()
