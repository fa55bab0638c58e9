"""The ``accord`` command line. Each area's commands live in their own module."""

from __future__ import annotations

import os

from coordinator.cli import (  # noqa: F401 - importing attaches the commands to the apps
    admin_cmd,
    agent_cmd,
    audit_cmd,
    autonomy_cmd,
    contract_offline,
    contract_online,
    demo_cmd,
    event_cmd,
    lifecycle_cmd,
    policy_cmd,
    run_cmd,
    schedule_cmd,
    server_cmd,
    team_cmd,
    trace_cmd,
)
from coordinator.cli._apps import add_examples, app
from coordinator.cli._examples import EXAMPLES

add_examples(app, EXAMPLES)


def main() -> None:
    # gRPC's core writes INFO lines of its own to stderr (a refused TLS handshake, on both sides)
    # unless told otherwise: an error is one line of ours, and --log-format json stays JSON.
    # Read when gRPC starts its core, i.e. at the first channel or server, after this.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    app()
