"""``accord coordinator start``.

The server (grpc, the store, the engine, OpenTelemetry) is imported inside the command, so the
other commands do not pay for it.
"""

from __future__ import annotations

import errno
import logging
import socket
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
        path = coordinator.config.admin_token_file
        if sys.stderr.isatty():
            typer.echo(f"admin token (written once to {path}): {coordinator.admin_token_created}", err=True)
        else:
            # Not a person at a terminal: stderr is a log that gets collected and kept, so say
            # where the token is (readable by this user only) instead of writing it there.
            logging.getLogger(__name__).warning(
                "created the admin token and wrote it to %s (mode 0600); it is not shown in logs", path
            )
    typer.echo(f"accord coordinator listening on {coordinator.address}")
    sys.stdout.flush()


def _parse_listen(value: str, option: str, example: str) -> tuple[str, int]:
    """ "HOST:PORT" (or "[v6]:PORT") -> (host, port); anything else fails with exit 2."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise fail(
            f"{option} {value!r}: expected HOST:PORT with a port from 0 to 65535, e.g. {example} "
            "(port 0 picks a free one)"
        )
    return host, int(port)


def _check_can_listen(host: str, port: int, option: str) -> None:
    """Fail (exit 2) before anything starts when ``host:port`` cannot be bound: gRPC would only
    say "Failed to bind" from deep inside start-up, after the database and token were set up."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    advice = f"choose {option} HOST:PORT"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {where}: unknown host {host!r} ({exc.strerror}); {advice}") from None
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            # As gRPC does: a port only in TIME_WAIT is free, one with a listener is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise fail(
                        f"cannot listen on {where}: the address is in use; stop the other process or {advice}"
                    ) from None
                errors.append(exc)
    if errors and len(errors) == len(infos):
        reason = errors[0].strerror or str(errors[0])
        raise fail(f"cannot listen on {where}: {reason}; {advice}")


@coordinator_app.command("start")
@command
def start(
    listen: Annotated[
        str, typer.Option(help="gRPC address HOST:PORT (port 0 picks a free one).")
    ] = DEFAULT_LISTEN,
    db: Annotated[
        Path | None,
        typer.Option(
            help="SQLite file (default $ACCORD_HOME/coordinator.db); one coordinator process per file."
        ),
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

    from contracts.durations import parse_duration
    from coordinator.server import configure_logging, serve

    if log_format not in ("text", "json"):
        raise fail(f"--log-format must be 'text' or 'json', not '{log_format}'")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise fail(f"--log-level must be debug, info, warning or error, not '{log_level}'")
    # Bad or busy addresses fail here, before the database, the admin token or coordinator.json
    # are touched.
    _check_can_listen(*_parse_listen(listen, "--listen", DEFAULT_LISTEN), "--listen")
    if ui.strip().lower() not in ("", "off", "none", "no", "false", "0"):  # web.hook.DISABLED
        _parse_listen(ui, "--ui", DEFAULT_UI)  # a busy UI port only logs a warning: the UI is a convenience
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
    except RuntimeError as exc:
        # Lost a race for the port after the check above: gRPC says "Failed to bind to ...".
        if "bind" not in str(exc).lower():
            raise
        raise fail(
            f"cannot listen on {listen}: the address could not be bound (in use?); "
            "stop the other process or choose --listen HOST:PORT"
        ) from None
    except OSError as exc:
        raise fail(f"cannot start the coordinator on {listen}: {exc}", 3) from None
