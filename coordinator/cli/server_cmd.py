"""``accord coordinator start``.

The server (grpc, the store, the engine, OpenTelemetry) is imported inside the command, so the
other commands do not pay for it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from coordinator.cli._apps import coordinator_app
from coordinator.cli._output import command, fail
from coordinator.config import DEFAULT_LISTEN, CoordinatorConfig, accord_home

if TYPE_CHECKING:
    from coordinator.server import Coordinator, ServerHook

# Other packages (the web UI) append hooks here, keyed by the option that enables them; the
# factory gets the config and returns the hook (e.g. a uvicorn server on config.ui_listen).
UI_HOOK_FACTORIES: list[object] = []
DEFAULT_UI = "127.0.0.1:7441"


def _ui_hook(config: CoordinatorConfig) -> ServerHook | None:
    # Imported here so other commands do not pay for starlette/uvicorn.
    from coordinator.web.hook import ui_hook

    return ui_hook(config)


UI_HOOK_FACTORIES.append(_ui_hook)


def _announce(coordinator: Coordinator) -> None:
    if coordinator.admin_token_created:
        typer.echo(
            f"admin token (written once to {coordinator.config.admin_token_file}): "
            f"{coordinator.admin_token_created}",
            err=True,
        )
    typer.echo(f"accord coordinator listening on {coordinator.address}")
    sys.stdout.flush()


@coordinator_app.command("start")
@command
def start(
    listen: Annotated[
        str, typer.Option(help="gRPC address HOST:PORT (port 0 picks a free one).")
    ] = DEFAULT_LISTEN,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file (default $ACCORD_HOME/coordinator.db).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text or json.")] = "text",
    ui: Annotated[
        str,
        typer.Option(help="Serve the tracing UI on HOST:PORT (port 0 picks a free one; 'off' to disable)."),
    ] = DEFAULT_UI,
    span_retention: Annotated[
        str, typer.Option(help="Keep spans this long (e.g. 7d, 12h, 90m); older ones are pruned.")
    ] = "7d",
) -> None:
    """Run the coordinator until SIGTERM or Ctrl-C."""
    import asyncio

    from coordinator.server import configure_logging, serve
    from coordinator.telemetry.retention import parse_duration

    if log_format not in ("text", "json"):
        raise fail(f"--log-format must be 'text' or 'json', not '{log_format}'")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise fail(f"--log-level must be debug, info, warning or error, not '{log_level}'")
    config = CoordinatorConfig(
        home=accord_home(),
        listen=listen,
        db_path=db,
        log_level=log_level,
        log_format=log_format,
        ui_listen=ui,
        span_retention=span_retention,
    )
    parse_duration(span_retention, what="--span-retention")  # a bad value fails before anything starts
    configure_logging(config.log_level, config.log_format)
    hooks: list[ServerHook] = []
    for factory in UI_HOOK_FACTORIES:
        hook = factory(config)  # type: ignore[operator]
        if hook is not None:
            hooks.append(hook)
    try:
        asyncio.run(serve(config, hooks, on_started=_announce))
    except OSError as exc:
        raise fail(f"cannot start the coordinator on {listen}: {exc}", 3) from None
