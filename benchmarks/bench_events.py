"""Events: published -> the triggered run's first step claimed, with the in-process bus and with
NATS JetStream, in one run.

Team ``ev-pub`` owns the event contract ``ev-pub/happened``; team ``ev-sub`` owns a one-step
workflow triggered by it and a contract its step calls. The benchmark is its own ``ev-sub``
agent: a long poll (``PollTask``) is always waiting, so the moment PollTask answers with the
task of the triggered run is the moment its first step is claimed (the coordinator claims an
offer for a waiting poll in the same commit that offers it). One event at a time:

    t0: PublishEvent (answered once the event is stored)
    t1: PollTask returns the triggered run's task (its input carries the event's n)

and ``t1 - t0`` is one sample; then the task is completed so the run ends. The path measured is
store -> hand on to the bus -> the bus's consumer runs the trigger -> the run starts -> its step is
offered to the waiting poll. The coordinator is the real subprocess on its SQLite default: once
with the in-process bus, once with ``--events nats://127.0.0.1:4222`` and a stream of its own
(deleted at the end). Ratio reported: p50(NATS) / p50(in process).

Run: ``python -m benchmarks.bench_events [--events 200] [--nats nats://127.0.0.1:4222]`` ->
benchmarks/results/events.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _harness as h
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

EVENT = """
contract: ev-pub/happened
version: 1.0.0
kind: event
payload: {type: object, required: [n], properties: {n: {type: integer}}}
"""

STEP = h.contract_yaml("ev-sub/react")

WORKFLOW = """
workflow: ev-sub/on-happened
input: {type: object, required: [n], properties: {n: {type: integer}}}
steps:
  react: {contract: "ev-sub/react@^1", input: {n: "${input.n}"}}
output: {n: "${steps.react.output.n}"}
triggers:
  - on: ev-pub/happened@^1
    input: {n: "${event.n}"}
"""

AGENT_ID = "bench-events"


async def _world(coordinator: h.Coordinator) -> tuple[str, str]:
    publisher = await h.create_team(coordinator, "ev-pub")
    subscriber = await h.create_team(coordinator, "ev-sub")
    await h.register(coordinator, publisher, EVENT, "contract")
    await h.register(coordinator, subscriber, STEP, "contract")
    await h.register(coordinator, subscriber, WORKFLOW, "workflow")
    return publisher, subscriber


async def measure(coordinator: h.Coordinator, events: int, warmup: int) -> dict[str, Any]:
    """``events`` samples (after ``warmup``) of published -> first step claimed, in seconds."""
    publisher, subscriber = await _world(coordinator)
    samples: list[float] = []
    async with coordinator.client(publisher) as pub, coordinator.client(subscriber) as agent:
        await agent.agent.RegisterAgent(
            agent_pb.RegisterAgentRequest(
                agent_id=AGENT_ID,
                bindings=[agent_pb.Binding(contract="ev-sub/react", major=1)],
                concurrency=1,
            )
        )
        for n in range(warmup + events):
            poll = asyncio.create_task(
                agent.agent.PollTask(agent_pb.PollTaskRequest(agent_id=AGENT_ID, wait_ms=20_000))
            )
            await asyncio.sleep(0.01)  # the poll is waiting at the coordinator (not timed)
            t0 = time.perf_counter()
            await pub.coordinator.PublishEvent(
                pb.PublishEventRequest(contract="ev-pub/happened@1", payload_json=json.dumps({"n": n}))
            )
            task = (await poll).task
            t1 = time.perf_counter()
            if not task.attempt_id or json.loads(task.input_json) != {"n": n}:
                raise RuntimeError(f"event {n}: the poll got {task} instead of its task")
            if n >= warmup:
                samples.append(t1 - t0)
            await agent.agent.CompleteTask(
                agent_pb.CompleteTaskRequest(
                    agent_id=AGENT_ID, attempt_id=task.attempt_id, output_json=task.input_json
                )
            )
    return {"events": events, "latency_ms": h.summary_ms(samples)}


async def bench(
    events: int = 200, warmup: int = 20, nats_url: str = "nats://127.0.0.1:4222"
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="accord-bench-events-"))
    stream = f"BENCH_{secrets.token_hex(4)}"
    results: dict[str, Any] = {"machine": h.machine_info(), "stream": stream}
    try:
        for name, args in (
            ("in_process", []),
            ("nats", ["--events", nats_url, "--events-stream", stream]),
        ):
            coordinator = h.Coordinator(root / name, *args).start()
            try:
                h.log(f"events: {name}, {events} events")
                results[name] = await measure(coordinator, events, warmup)
            finally:
                coordinator.stop()
    finally:
        await _delete_stream(nats_url, stream)
        shutil.rmtree(root, ignore_errors=True)
    results["ratio_p50_nats_to_in_process"] = round(
        results["nats"]["latency_ms"]["p50_ms"] / results["in_process"]["latency_ms"]["p50_ms"], 2
    )
    return results


async def _delete_stream(url: str, stream: str) -> None:
    import nats
    import nats.js.errors

    try:
        nc = await nats.connect(url)
    except Exception:
        return
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


def format_result(result: dict[str, Any]) -> str:
    rows = [["bus", "events", "p50 ms", "p99 ms", "max ms"]]
    for name in ("in_process", "nats"):
        latency = result[name]["latency_ms"]
        rows.append([name, result[name]["events"], latency["p50_ms"], latency["p99_ms"], latency["max_ms"]])
    return (
        "event published -> triggered run's first step claimed\n"
        + h.table(rows)
        + f"\np50 NATS / in process: {result['ratio_p50_nats_to_in_process']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    result = asyncio.run(bench(args.events, args.warmup, args.nats))
    print(format_result(result))
    h.write_result("events", result)


if __name__ == "__main__":
    main()
