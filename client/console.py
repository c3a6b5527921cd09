"""Where the CLI writes: plain consoles for people, JSON lines for scripts, and the exit codes it ends with."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_CONNECTION = 4
EXIT_CONFLICT = 5
EXIT_SERVICE = 6


def out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def emit(value: Any, indent: int | None = 2) -> None:
    typer.echo(json.dumps(value, indent=indent, default=str))
