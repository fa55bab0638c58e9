"""The flows the ``prefect`` engine's tests run on a real Prefect 3 (served by serve_flows.py).
Each takes the whole task input as its one parameter ``payload`` (``input_parameter: payload``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import Artifact
from prefect.context import FlowRunContext


class CardDeclined(Exception):
    pass


def _labels() -> dict[str, Any]:
    context = FlowRunContext.get()
    return dict(context.flow_run.labels) if context and context.flow_run else {}


@task
def double(value: int) -> int:
    return value * 2


@flow(name="accord-echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    output = {
        "echo": payload,
        "doubled": double(int(payload.get("n", 1))),
        "traceparent": _labels().get("__OTEL_TRACEPARENT"),
    }
    Artifact(type="json", key="accord-output", data=output).create()
    return output


@task
def explode(kind: str) -> None:
    if kind == "declined":
        raise CardDeclined("card declined by the issuer")
    raise RuntimeError(f"the ledger is unavailable ({kind})")


@flow(name="accord-fail")
def fail(payload: dict[str, Any]) -> None:
    explode(str(payload.get("kind", "transient")))


@flow(name="accord-slow")
def slow(payload: dict[str, Any]) -> None:
    # Tells the test it is running (a file), then waits to be cancelled.
    marker = payload.get("marker")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    deadline = time.monotonic() + float(payload.get("seconds", 120))
    while time.monotonic() < deadline:
        time.sleep(0.2)
