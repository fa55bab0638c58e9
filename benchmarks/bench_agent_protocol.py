"""Agent protocol A/B: v1 agents (unary PollTask/CompleteTask/Heartbeat) against v2 agents (one
accord.agent.v2 stream each) on ONE coordinator, in one run, in alternating rounds.

Two identical setups side by side: for each protocol, three teams (``<p>-a``, ``<p>-b``,
``<p>-c``) owning one no-op contract each (the ``python`` engine calling ``benchmarks:echo``),
one agent process per team speaking that protocol, and the three-step chain ``<p>-a/chain``.
Each round measures, for one protocol then the other (the order flips every round):

- latency: ``--chain-runs`` chains one at a time (a StartRun that waits for the end);
- throughput: ``--in-flight`` chains kept going for ``--seconds``.

Over each phase the coordinator's CPU and that protocol's agents' CPU are read, so CPU per step
is each side's own (the other protocol's agents sit idle meanwhile: an open long poll or stream
each). Everything shares the machine's cores, so only the ratios of one run mean much.

Run: ``python -m benchmarks.bench_agent_protocol [--rounds 6]`` →
benchmarks/results/agent_protocol.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from benchmarks import _harness as h
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

PROTOCOLS = ("v1", "v2")
STEPS = 3


class Side:
    """One protocol's teams, agents and chain."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.workflow = ""
        self.token = ""
        self.pids: list[int] = []
        self.latency: list[float] = []
        self.chain_cpu = {"coordinator": 0.0, "agents": 0.0, "steps": 0}
        self.tput = {"coordinator": 0.0, "agents": 0.0, "steps": 0, "seconds": 0.0}

    async def set_up(self, world: h.World, concurrency: int) -> None:
        teams = [f"{self.protocol}-{x}" for x in "abc"]
        contracts = [await world.contract(team, "step") for team in teams]
        self.workflow = await world.chain(teams[0], "chain", contracts)
        self.token = world.tokens[teams[0]]
        for team, contract in zip(teams, contracts, strict=True):
            agent = world.agents.start(
                team,
                world.tokens[team],
                world.coordinator.address,
                [contract],
                concurrency=concurrency,
                protocol=self.protocol,
            )
            assert agent.process is not None
            self.pids.append(agent.process.pid)

    def agents_cpu(self) -> float:
        return sum(h.cpu_seconds(pid) for pid in self.pids)


async def _chains(world: h.World, side: Side, runs: int) -> None:
    async with world.coordinator.client(side.token) as client:
        cpu0, agents0 = world.coordinator.cpu(), side.agents_cpu()
        for i in range(runs):
            t0 = time.perf_counter()
            run = await h.run_to_end(client, side.workflow, {"n": i})
            side.latency.append(time.perf_counter() - t0)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        side.chain_cpu["coordinator"] += world.coordinator.cpu() - cpu0
        side.chain_cpu["agents"] += side.agents_cpu() - agents0
        side.chain_cpu["steps"] += runs * STEPS


async def _throughput(world: h.World, side: Side, in_flight: int, seconds: float) -> None:
    finished = 0
    stop_at = time.monotonic() + seconds
    async with world.coordinator.client(side.token) as client:

        async def worker(k: int) -> None:
            nonlocal finished
            i = 0
            while time.monotonic() < stop_at:
                run = await h.run_to_end(client, side.workflow, {"n": k * 1_000_000 + i})
                i += 1
                if run.status == pb.RUN_STATUS_SUCCEEDED:
                    finished += 1

        began = time.monotonic()
        cpu0, agents0 = world.coordinator.cpu(), side.agents_cpu()
        await asyncio.gather(*(worker(k) for k in range(in_flight)))
        side.tput["seconds"] += time.monotonic() - began
        side.tput["coordinator"] += world.coordinator.cpu() - cpu0
        side.tput["agents"] += side.agents_cpu() - agents0
        side.tput["steps"] += finished * STEPS


def _per_step_ms(cpu: float, steps: float) -> float | None:
    return round(1000 * cpu / steps, 3) if steps else None


def _report(side: Side) -> dict[str, Any]:
    chain, tput = side.chain_cpu, side.tput
    return {
        "chain": h.summary_ms(side.latency),
        "chain_coordinator_cpu_ms_per_step": _per_step_ms(chain["coordinator"], chain["steps"]),
        "chain_agent_cpu_ms_per_step": _per_step_ms(chain["agents"], chain["steps"]),
        "steps_per_s": round(tput["steps"] / tput["seconds"], 1) if tput["seconds"] else None,
        "coordinator_cpu_ms_per_step": _per_step_ms(tput["coordinator"], tput["steps"]),
        # Each step runs on one of the three agents: their CPU over the steps is one agent's per step.
        "agent_cpu_ms_per_step": _per_step_ms(tput["agents"], tput["steps"]),
    }


def _ratio(new: float | None, old: float | None) -> float | None:
    return round(new / old, 3) if new is not None and old else None


async def bench(
    rounds: int = 6, chain_runs: int = 40, seconds: float = 5.0, in_flight: int = 24, concurrency: int = 8
) -> dict[str, Any]:
    world = h.World.create("protocol")
    try:
        sides = {p: Side(p) for p in PROTOCOLS}
        for side in sides.values():
            await side.set_up(world, concurrency)
        await world.agents.wait_registered()
        h.log("agent protocol: warming up both sides")
        for side in sides.values():
            await _chains(world, side, 10)
            side.latency.clear()
            side.chain_cpu = {"coordinator": 0.0, "agents": 0.0, "steps": 0}
        for n in range(rounds):
            order = PROTOCOLS if n % 2 == 0 else PROTOCOLS[::-1]
            for protocol in order:
                side = sides[protocol]
                await _chains(world, side, chain_runs)
                await _throughput(world, side, in_flight, seconds)
            h.log(f"agent protocol: round {n + 1}/{rounds} done")
        report = {p: _report(side) for p, side in sides.items()}
    finally:
        world.close()
    v1, v2 = report["v1"], report["v2"]
    keys = (
        "chain_coordinator_cpu_ms_per_step",
        "chain_agent_cpu_ms_per_step",
        "coordinator_cpu_ms_per_step",
        "agent_cpu_ms_per_step",
        "steps_per_s",
    )
    ratios = {key: _ratio(v2[key], v1[key]) for key in keys}
    ratios["chain_p50"] = _ratio(v2["chain"]["p50_ms"], v1["chain"]["p50_ms"])
    ratios["chain_p99"] = _ratio(v2["chain"]["p99_ms"], v1["chain"]["p99_ms"])
    return {
        "what": "v1 (unary) vs v2 (stream) agents on one coordinator, alternating rounds: a three-step "
        "chain one run at a time, then chains kept in flight; no-op python engine, durable SQLite",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "settings": {
            "rounds": rounds,
            "chain_runs_per_round": chain_runs,
            "throughput_seconds_per_round": seconds,
            "in_flight": in_flight,
            "agent_concurrency": concurrency,
        },
        "v1": v1,
        "v2": v2,
        "ratios_v2_over_v1": ratios,
    }


def format_result(result: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [
        ("", "chain p50 ms", "chain p99 ms", "steps/s", "coord CPU ms/step", "agent CPU ms/step")
    ]
    for protocol in PROTOCOLS:
        r = result[protocol]
        rows.append(
            (
                protocol,
                r["chain"]["p50_ms"],
                r["chain"]["p99_ms"],
                r["steps_per_s"],
                r["coordinator_cpu_ms_per_step"],
                r["agent_cpu_ms_per_step"],
            )
        )
    q = result["ratios_v2_over_v1"]
    rows.append(
        (
            "v2 / v1",
            q["chain_p50"],
            q["chain_p99"],
            q["steps_per_s"],
            q["coordinator_cpu_ms_per_step"],
            q["agent_cpu_ms_per_step"],
        )
    )
    return h.table(rows) + f"\nload average (1 min) at the end: {result['machine'].get('loadavg_1m')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    parser.add_argument("--chain-runs", type=int, default=40, help="chains one at a time per round")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput window per round")
    parser.add_argument("--in-flight", type=int, default=24, help="chains kept going in the window")
    parser.add_argument("--concurrency", type=int, default=8, help="task slots per agent")
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.rounds, args.chain_runs, args.seconds, args.in_flight, args.concurrency))
    print(format_result(result))
    print(f"written: {h.write_result('agent_protocol', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
