"""Hop latency: a three-step cross-team chain, end to end, against a bare gRPC round trip.

Three teams (``hop-a``, ``hop-b``, ``hop-c``) each own one contract and run one agent process
whose engine is a no-op (the built-in ``python`` engine calling ``benchmarks:echo``, an async
function returning its input). Team ``hop-a`` owns the workflow ``a → b → c``. One run at a time:
a StartRun that waits for the run's end (``wait_ms``); that wall time is one sample. The coordinator
is the real subprocess on its durable SQLite default.

The floor is a bare ``grpc.aio`` unary round trip (an echo servicer in another process, bytes in,
bytes out, no interceptors) measured in the same way on the same machine.

What a chain needs at the very least on the wire: StartRun (1 round trip: its request, and its
answer once the run ended), then per step the task to the agent (½) and the agent's result (½):
about one round trip per hop, ~4 floors in all. We report

    overhead per hop = (p50(chain) - 3 x p50(floor)) / 3

i.e. everything a hop costs beyond one bare round trip (the StartRun is charged to the
hops too, so this is an upper bound of what Accord adds per hop).

Run: ``python -m benchmarks.bench_hop [--runs 300]`` → benchmarks/results/hop.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from benchmarks import _harness as h
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0
TEAMS = ("hop-a", "hop-b", "hop-c")
_ECHO = "/bench.Echo/Echo"
_ECHO_STREAM = "/bench.Echo/EchoStream"


# ---------------------------------------------------------------- the floor


async def _echo_server(port_file: str) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def echo_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            yield request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {  # bytes in, bytes out
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "EchoStream": grpc.stream_stream_rpc_method_handler(echo_stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(port_file).write_text(str(port))  # noqa: ASYNC240 - once, before serving
    await server.wait_for_termination()


async def measure_floor(calls: int = 3000, warmup: int = 300, payload: bytes = b'{"n":1}') -> dict[str, Any]:
    """p50/p99 of a bare grpc.aio unary round trip to an echo server in another process, and the
    server's CPU per call; then its CPU per message sent and answered on one open stream (what an
    agent's v2 stream costs per task at least)."""
    port_file = Path(tempfile.mkdtemp(prefix="accord-echo-")) / "port"
    command = [sys.executable, "-m", "benchmarks.bench_hop", "--echo-server", str(port_file)]
    server = subprocess.Popen(command, cwd=h.REPO)  # noqa: ASYNC220 - started once, before timing
    try:
        for _ in range(500):
            if port_file.exists() and port_file.read_text():
                break
            await asyncio.sleep(0.02)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port_file.read_text()}") as channel:
            call = channel.unary_unary(_ECHO)
            for _ in range(warmup):
                await call(payload)
            samples = []
            cpu0 = h.cpu_seconds(server.pid)
            for _ in range(calls):
                t0 = time.perf_counter()
                await call(payload)
                samples.append(time.perf_counter() - t0)
            cpu_per_call = (h.cpu_seconds(server.pid) - cpu0) / calls
            stream = channel.stream_stream(_ECHO_STREAM)()
            for _ in range(warmup):
                await stream.write(payload)
                await stream.read()
            cpu0 = h.cpu_seconds(server.pid)
            for _ in range(calls):
                await stream.write(payload)
                await stream.read()
            cpu_per_message = (h.cpu_seconds(server.pid) - cpu0) / calls
            await stream.done_writing()
        result = h.summary_ms(samples)
        result.update(
            server_cpu_us_per_call=round(cpu_per_call * 1e6, 1),
            server_cpu_us_per_stream_message=round(cpu_per_message * 1e6, 1),
        )
        return result
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(port_file.parent, ignore_errors=True)


# ---------------------------------------------------------------- the chain


async def measure_chain(runs: int, warmup: int, concurrency: int, payload_kb: int = 0) -> dict[str, Any]:
    world = h.World.create("hop")
    try:
        contracts = [await world.contract(team, "step") for team in TEAMS]
        workflow = await world.chain(TEAMS[0], "chain", contracts)
        for team, contract in zip(TEAMS, contracts, strict=True):
            world.agents.start(
                team, world.tokens[team], world.coordinator.address, [contract], concurrency=concurrency
            )
        await world.agents.wait_registered()
        coordinator = world.coordinator
        async with coordinator.client(world.tokens[TEAMS[0]]) as client:
            for i in range(warmup):
                run = await h.run_to_end(client, workflow, h.run_input(i, payload_kb))
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            cpu0 = coordinator.cpu()
            agent_cpu0 = sum(h.cpu_seconds(p) for p in world.agents.pids())
            samples: list[float] = []
            dispatch: list[float] = []  # attempt scheduled → started (ms, coordinator clock)
            on_agent: list[float] = []  # attempt started → finished (ms): agent + CompleteTask
            failed = 0
            for i in range(runs):
                t0 = time.perf_counter()
                run = await h.run_to_end(client, workflow, h.run_input(i, payload_kb))
                samples.append(time.perf_counter() - t0)
                if run.status != pb.RUN_STATUS_SUCCEEDED:
                    failed += 1
                    continue
                for step in run.steps:
                    for attempt in step.attempts:
                        dispatch.append(attempt.started_unix_ms - attempt.scheduled_unix_ms)
                        on_agent.append(attempt.finished_unix_ms - attempt.started_unix_ms)
            cpu = coordinator.cpu() - cpu0
            agent_cpu = sum(h.cpu_seconds(p) for p in world.agents.pids()) - agent_cpu0
        result: dict[str, Any] = h.summary_ms(samples)
        result.update(
            failed=failed,
            coordinator_cpu_ms_per_run=round(cpu * 1000 / runs, 3),
            agents_cpu_ms_per_step=round(agent_cpu * 1000 / (3 * runs), 3),
            attempt_dispatch_mean_ms=round(statistics.fmean(dispatch), 3) if dispatch else None,
            attempt_on_agent_mean_ms=round(statistics.fmean(on_agent), 3) if on_agent else None,
            coordinator_rss_mb=round(coordinator.rss() / 2**20, 1),
        )
        return result
    finally:
        world.close()


async def bench(
    runs: int = 300, warmup: int = 30, concurrency: int = 4, floor_calls: int = 3000, payload_kb: int = 0
) -> dict[str, Any]:
    h.log(f"hop: floor ({floor_calls} bare grpc.aio round trips)")
    floor = await measure_floor(floor_calls)
    h.log(f"hop: floor p50 {floor['p50_ms']} ms; chain: {runs} runs after {warmup} warm-up runs")
    chain = await measure_chain(runs, warmup, concurrency, payload_kb)
    per_hop = (chain["p50_ms"] - 3 * floor["p50_ms"]) / 3
    return {
        "what": "three-step cross-team chain (3 teams, 3 agent processes, no-op python engine), "
        "StartRun waiting for the run's end, one run at a time; floor = bare grpc.aio unary round trip",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "settings": {
            "runs": runs,
            "warmup": warmup,
            "agent_concurrency": concurrency,
            "floor_calls": floor_calls,
            "payload_kb": payload_kb,
        },
        "chain": chain,
        "floor": floor,
        "overhead_per_hop_ms": round(per_hop, 3),
        "chain_in_floors": round(chain["p50_ms"] / floor["p50_ms"], 1),
        "targets": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS},
        "met": {"p50": chain["p50_ms"] < TARGET_P50_MS, "p99": chain["p99_ms"] < TARGET_P99_MS},
    }


def format_result(result: dict[str, Any]) -> str:
    chain, floor = result["chain"], result["floor"]
    rows = [
        ("", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"),
        ("3-step chain", chain["n"], chain["p50_ms"], chain["p90_ms"], chain["p99_ms"], chain["max_ms"]),
        ("grpc floor", floor["n"], floor["p50_ms"], floor["p90_ms"], floor["p99_ms"], floor["max_ms"]),
    ]
    return (
        h.table(rows) + f"\noverhead per hop (p50 chain - 3 x floor)/3: {result['overhead_per_hop_ms']} ms;"
        f" chain = {result['chain_in_floors']} floors"
        + f"\ncoordinator CPU per run: {chain['coordinator_cpu_ms_per_run']} ms; agents CPU per step:"
        f" {chain['agents_cpu_ms_per_step']} ms; mean dispatch {chain['attempt_dispatch_mean_ms']} ms,"
        f" mean on-agent {chain['attempt_on_agent_mean_ms']} ms"
        + f"\nfloor's server CPU: {floor.get('server_cpu_us_per_call')} us per unary call,"
        f" {floor.get('server_cpu_us_per_stream_message')} us per message echoed on an open stream"
        + f"\ntargets p50 < {TARGET_P50_MS} ms: {'met' if result['met']['p50'] else 'MISSED'};"
        f" p99 < {TARGET_P99_MS} ms: {'met' if result['met']['p99'] else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="measured chain runs (default 300)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4, help="concurrency of each agent")
    parser.add_argument("--floor-calls", type=int, default=3000)
    h.add_payload_kb(parser, "; its result goes to hop-<N>kb.json, beside the default run's hop.json")
    parser.add_argument("--echo-server", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        asyncio.run(_echo_server(args.echo_server))
        return 0
    result = asyncio.run(bench(args.runs, args.warmup, args.concurrency, args.floor_calls, args.payload_kb))
    print(format_result(result))
    name = f"hop-{args.payload_kb}kb" if args.payload_kb else "hop"
    print(f"written: {h.write_result(name, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
