"""``accord demo``: the whole product in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coordinator.cli._apps import app
from coordinator.cli._output import command


@app.command("demo")
@command
def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the coordinator, agents and UI up to explore.")
    ] = False,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="ACCORD_HOME for the demo (default: a new temporary directory)."),
    ] = None,
    ui: Annotated[
        str, typer.Option("--ui", help="Where to serve the UI (a free port is used if this one is taken).")
    ] = "127.0.0.1:7441",
) -> None:
    """Start a coordinator and four team agents, run a cross-team workflow three times (a clean
    run, a retried one, a failed one), show a breaking contract change being refused, print a
    trace waterfall, and stop cleanly."""
    from coordinator.demo.runner import run_demo

    code = run_demo(
        keep_running=keep_running, home=home, ui=ui, say=lambda line: typer.echo(line, color=False)
    )
    if code:
        raise typer.Exit(code)
