"""Serve the test flows and the prefect-team example's flow as deployments named ``accord``
(``flow.serve()``'s runner: it creates the deployments and runs their flow runs as
subprocesses). Run in the Prefect venv by tests/engines/prefect_real.py."""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import serve

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[2] / "examples" / "prefect-team" / "flows")]

import accord_test_flows as t  # noqa: E402
from charge_card import charge_card  # noqa: E402

if __name__ == "__main__":
    serve(
        *(f.to_deployment(name="accord") for f in (t.echo, t.fail, t.no_output, t.slow, charge_card)),
        limit=8,
    )
