"""The ``accord`` command line. Each area's commands live in their own module."""

from __future__ import annotations

from coordinator.cli import (  # noqa: F401 - importing attaches the commands to the apps
    admin_cmd,
    agent_cmd,
    contract_offline,
    contract_online,
    demo_cmd,
    event_cmd,
    run_cmd,
    server_cmd,
    team_cmd,
    trace_cmd,
)
from coordinator.cli._apps import app


def main() -> None:
    app()
