"""``accord agent start``: run a team agent beside its engine."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from coordinator.cli._apps import agent_app
from coordinator.cli._output import command


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


@agent_app.command("start")
@command
def start(
    config: Path = typer.Option(
        ..., "--config", "-c", help="Agent config file (YAML); reloaded when it changes."
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.info, "--log-level", metavar="LEVEL", help="Log level: debug, info, warning or error."
    ),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="Log lines as text or JSON."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Where undelivered results wait (default: $ACCORD_HOME/agent-<team>)."
    ),
    agent_id: str | None = typer.Option(None, "--agent-id", help="This replica's id (default: host-pid)."),
    grace: float = typer.Option(
        30.0, "--grace", help="Seconds in-flight tasks may run after SIGTERM before they are handed back."
    ),
    reload_interval: float = typer.Option(1.0, "--reload-interval", hidden=True),
    export_traces: bool = typer.Option(True, "--export-traces/--no-export-traces", hidden=True),
    metrics: str = typer.Option(
        "off",
        "--metrics",
        envvar="ACCORD_AGENT_METRICS",
        help=(
            "Serve the agent's metrics for Prometheus on HOST:PORT at /metrics (port 0 picks a free"
            " one; 'off', the default: several agents may share a host). OTLP export follows the"
            " standard OTEL_METRICS_EXPORTER / OTEL_EXPORTER_OTLP_* variables."
        ),
    ),
) -> None:
    """Dial out to the coordinator, serve the contracts in the config, run their tasks."""
    from coordinator.cli.server_cmd import check_can_listen, parse_listen

    if metrics.strip().lower() not in ("", "off"):
        # A bad or busy address fails here, before the agent starts (exit 2).
        check_can_listen(*parse_listen(metrics, "--metrics", "127.0.0.1:9465"), "--metrics")
    from team_agent.main import StartOptions
    from team_agent.main import start as start_agent

    start_agent(
        StartOptions(
            config_path=config,
            log_level=log_level.value,
            log_format=log_format.value,
            state_dir=state_dir,
            agent_id=agent_id,
            grace=grace,
            reload_interval=reload_interval,
            export_traces=export_traces,
            metrics=metrics,
        )
    )
