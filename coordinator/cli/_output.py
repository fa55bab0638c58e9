"""Shared CLI plumbing: printing, and turning errors into messages and exit codes.

Exit codes (docs/troubleshooting.md, "Exit codes"): 0 ok; 1 the run or check failed; 2 bad input or usage;
3 coordinator unreachable, or the call was refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer

from contracts.errors import AccordError, FileProblemsError

P = ParamSpec("P")
R = TypeVar("R")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def json_text(value: str, option: str) -> str:
    """The JSON text an option was given, inline or as ``@file``; checked to parse, so a typo
    fails here (exit 2, naming the option or file, line and column) and not on the server."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as exc:
            raise fail(f"{option} {value}: cannot read {path}: {exc.strerror or exc}") from None
        where = str(path)
    else:
        text, where = value, option
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{where}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    return text


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn AccordError (and interrupts) into a message on stderr and the right exit code."""
    try:
        yield
    except FileProblemsError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except AccordError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def command(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for CLI commands: errors become messages and exit codes, never tracebacks."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with reported_errors():
            return fn(*args, **kwargs)

    return wrapper
