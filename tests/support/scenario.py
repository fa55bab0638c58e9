"""Contract and workflow texts the coordinator tests share, and run helpers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.client import AsyncClient


def contract(
    name: str,
    version: str = "1.0.0",
    *,
    input_props: str = "{order_id: {type: string}}",
    input_required: str = "[order_id]",
    output_props: str = "{ref: {type: string}}",
    output_required: str = "[ref]",
    extra: str = "",
) -> str:
    return (
        f"contract: {name}\n"
        f"version: {version}\n"
        f"description: test contract {name}\n"
        "input:\n"
        "  type: object\n"
        f"  required: {input_required}\n"
        f"  properties: {input_props}\n"
        "output:\n"
        "  type: object\n"
        f"  required: {output_required}\n"
        f"  properties: {output_props}\n"
        f"{extra}"
    )


TERMINAL = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


async def start_run(client: AsyncClient, workflow: str, value: Any, key: str = "") -> pb.StartRunResponse:
    return await client.coordinator.StartRun(
        pb.StartRunRequest(workflow=workflow, input_json=json.dumps(value), idempotency_key=key)
    )


async def wait_run(client: AsyncClient, run_id: str, within: float = 60.0) -> pb.Run:
    """Poll GetRun until the run is terminal."""
    deadline = time.monotonic() + within
    while True:
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
        if run.status in TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not finish in {within}s: {run}")
        await asyncio.sleep(0.05)


def step(run: pb.Run, step_id: str) -> pb.Step:
    for s in run.steps:
        if s.id == step_id:
            return s
    raise AssertionError(f"no step {step_id} in {[s.id for s in run.steps]}")
