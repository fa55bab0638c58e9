"""Serve the test flows and the prefect-team example's flow as deployments named ``accord``
(``flow.serve()``'s runner: it creates the deployments and runs their flow runs as
subprocesses). Run in the Prefect venv by tests/engines/prefect_real.py."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
from prefect import serve

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[2] / "examples" / "prefect-team" / "flows")]

import accord_test_flows as t  # noqa: E402
from charge_card import charge_card  # noqa: E402


def wait_for_the_api(within: float = 180.0) -> None:
    """Started beside the server (importing Prefect takes seconds too): wait until it answers,
    since Prefect's client gives up at once on a first connection refused."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(f"{os.environ['PREFECT_API_URL']}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"the Prefect API did not answer within {within}s")
        time.sleep(0.2)


if __name__ == "__main__":
    wait_for_the_api()
    serve(
        *(f.to_deployment(name="accord") for f in (t.echo, t.fail, t.slow, charge_card)),
        limit=8,
    )
