"""The ``accord`` command line. Each area's commands live in their own module."""

from __future__ import annotations

import logging
import os
import sys

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
    try:
        app()
    except SystemExit as done:
        if "temporalio" not in sys.modules:
            raise
        _exit_without_finalizing(done.code)


def _exit_without_finalizing(code: object) -> None:
    """Exit with ``code`` once everything is written, without the interpreter's finalization.

    The temporalio SDK (the ``temporal`` engine) keeps native threads of its own that may touch the
    interpreter while it finalizes: the process then aborts with "Fatal Python error:
    PyGILState_Release" (exit 134 instead of the command's; temporalio/sdk-python issue 300). By
    here the command has closed what it opened; what is left is flushed, then the process ends.
    """
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
