"""Temporal side of the peer benchmark; runs with benchmarks/.envs/temporal/bin/python.

Connects to an already started dev server, runs a worker (three no-op activities,
one workflow calling them in sequence) in this process, then measures:
  * latency: N sequential runs, client.start_workflow -> handle.result()
  * throughput: C concurrent client loops for S seconds, activities completed / s
Prints one line "PEER_RESULT <json>" on stdout.  Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

TASK_QUEUE = "accord-bench"


@activity.defn
async def step_a(payload: dict) -> dict:
    return {"step": "a", "req": payload.get("req")}


@activity.defn
async def step_b(payload: dict) -> dict:
    return {"step": "b", "req": payload.get("req")}


@activity.defn
async def step_c(payload: dict) -> dict:
    return {"step": "c", "req": payload.get("req")}


@workflow.defn(sandboxed=False)
class Chain:
    @workflow.run
    async def run(self, payload: dict) -> dict:
        opts = {"start_to_close_timeout": timedelta(seconds=30)}
        a = await workflow.execute_activity(step_a, payload, **opts)
        b = await workflow.execute_activity(step_b, a, **opts)
        c = await workflow.execute_activity(step_c, b, **opts)
        return c


async def one_run(client: Client, req: str) -> float:
    t0 = time.perf_counter()
    handle = await client.start_workflow(
        Chain.run,
        {"req": req},
        id=f"chain-{uuid.uuid4().hex}",
        task_queue=TASK_QUEUE,
        execution_timeout=timedelta(seconds=60),
    )
    result = await handle.result()
    dt = time.perf_counter() - t0
    assert result["step"] == "c", result
    return dt


async def main(args: argparse.Namespace) -> dict:
    client = None
    for attempt in range(60):  # the port opens a little before the frontend serves
        try:
            client = await Client.connect(f"127.0.0.1:{args.port}", namespace="default")
            break
        except Exception as exc:
            if attempt == 59:
                raise
            print(f"connect failed ({exc!r}), retrying", file=sys.stderr)
            await asyncio.sleep(0.5)
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[Chain],
        activities=[step_a, step_b, step_c],
        max_concurrent_activities=args.concurrency * 2,
        max_concurrent_workflow_tasks=args.concurrency * 2,
    )
    out: dict = {}
    async with worker:
        for i in range(args.warmup):
            await asyncio.wait_for(one_run(client, f"warm-{i}"), 60)
        lat: list[float] = []
        lat_deadline = time.monotonic() + args.latency_budget
        errors = 0
        for i in range(args.runs):
            if time.monotonic() > lat_deadline:
                break
            try:
                lat.append(await asyncio.wait_for(one_run(client, f"lat-{i}"), 60))
            except Exception as exc:  # counted, reported
                errors += 1
                print(f"latency run {i} failed: {exc!r}", file=sys.stderr)
        out["latencies_s"] = lat
        out["latency_errors"] = errors

        done = 0
        failed = 0
        stop_at = time.monotonic() + args.seconds
        max_per_loop = args.max_runs_per_loop

        async def loop(k: int) -> None:
            nonlocal done, failed
            for j in range(max_per_loop):
                if time.monotonic() >= stop_at:
                    return
                try:
                    await asyncio.wait_for(one_run(client, f"tp-{k}-{j}"), 60)
                    if time.monotonic() <= stop_at:
                        done += 1
                except Exception as exc:
                    failed += 1
                    print(f"throughput run failed: {exc!r}", file=sys.stderr)

        t0 = time.monotonic()
        await asyncio.gather(*(loop(k) for k in range(args.concurrency)))
        # Only runs completed inside the window count; the window is the divisor.
        elapsed = min(time.monotonic(), stop_at) - t0
        out.update(
            throughput_runs=done,
            throughput_failed=failed,
            throughput_window_s=round(elapsed, 3),
            steps_per_s=round(done * 3 / elapsed, 2) if elapsed > 0 else None,
            concurrency=args.concurrency,
        )
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency-budget", type=float, default=300.0)
    p.add_argument("--max-runs-per-loop", type=int, default=100000)
    a = p.parse_args()
    res = asyncio.run(main(a))
    import temporalio

    res["versions"] = {"temporalio": temporalio.__version__}
    print("PEER_RESULT " + json.dumps(res), flush=True)
