"""Throughput: step completions per second, sustained, with 1, 4 and 16 agent processes.

One team (``tput``) owns three no-op contracts and the workflow ``tput/chain`` (s1 → s2 → s3,
each step reading the previous step's output); every agent process serves all three contracts
with ``--concurrency`` slots each (the built-in ``python`` engine calling ``benchmarks:echo``).
The benchmark process keeps ``in_flight`` runs going at all times (a StartRun that waits
for the run's end, start the next) so the agents never wait for work: by default 2 x agents x concurrency,
at least 64. After a warm-up, it counts the steps of the runs that finished inside a window of
``--seconds`` (default 60); the coordinator's CPU (user + system, from psutil or /proc) over the
window and its RSS at the end are recorded, and the agents' and the client's CPU beside it
(everything shares the same two cores).

Run: ``python -m benchmarks.bench_throughput [--seconds 60] [--agents 1,4,16] [--concurrency 8]``
→ benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from benchmarks import _harness as h
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

TARGET_STEPS_PER_S = 1500.0
STEPS = 3


async def drive(
    world: h.World, workflow: str, token: str, *, in_flight: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Keep ``in_flight`` runs going; count the steps of runs finished in the window."""
    coordinator = world.coordinator
    done_at: list[float] = []
    latencies: list[float] = []
    failed = 0
    stop_at = 0.0

    async with coordinator.client(token) as client:

        async def worker(k: int) -> None:
            nonlocal failed
            i = 0
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                run = await h.run_to_end(client, workflow, {"n": k * 1_000_000 + i})
                t1 = time.monotonic()
                i += 1
                if run.status != pb.RUN_STATUS_SUCCEEDED:
                    failed += 1
                    continue
                done_at.append(t1)
                latencies.append(t1 - t0)

        start = time.monotonic()
        stop_at = start + warmup + seconds
        workers = [asyncio.create_task(worker(k)) for k in range(in_flight)]
        await asyncio.sleep(warmup)
        window_start = time.monotonic()
        cpu0 = coordinator.cpu()
        agents_cpu0 = sum(h.cpu_seconds(p) for p in world.agents.pids())
        client_cpu0 = time.process_time()
        first = len(done_at)
        await asyncio.sleep(seconds)
        window_end = time.monotonic()
        cpu = coordinator.cpu() - cpu0
        agents_cpu = sum(h.cpu_seconds(p) for p in world.agents.pids()) - agents_cpu0
        client_cpu = time.process_time() - client_cpu0
        rss = coordinator.rss()
        in_window = sum(1 for t in done_at[first:] if t <= window_end)
        window_latencies = latencies[first : first + in_window]
        await asyncio.gather(*workers, return_exceptions=True)
    elapsed = window_end - window_start
    steps = in_window * STEPS
    return {
        "window_s": round(elapsed, 2),
        "runs_finished": in_window,
        "failed_runs": failed,
        "steps_per_s": round(steps / elapsed, 1),
        "runs_per_s": round(in_window / elapsed, 1),
        "coordinator_cpu_pct": round(100 * cpu / elapsed, 1),
        "coordinator_cpu_ms_per_step": round(1000 * cpu / steps, 3) if steps else None,
        "coordinator_rss_mb": round(rss / 2**20, 1),
        "agents_cpu_pct": round(100 * agents_cpu / elapsed, 1),
        "client_cpu_pct": round(100 * client_cpu / elapsed, 1),
        "run_latency": h.summary_ms(window_latencies),
        "loadavg_1m": h.loadavg(),
    }


async def one(
    agents: int,
    concurrency: int,
    seconds: float,
    warmup: float,
    in_flight: int | None,
    world: h.World | None = None,
) -> dict[str, Any]:
    """One configuration on a fresh coordinator (or on ``world``, already set up, by bench_scale)."""
    own = world is None
    if world is None:
        world = h.World.create(f"tput{agents}")
    try:
        contracts, workflow = await setup(world)
        token = world.tokens["tput"]
        for _ in range(agents):
            world.agents.start("tput", token, world.coordinator.address, contracts, concurrency=concurrency)
        await world.agents.wait_registered()
        flying = in_flight or max(64, 2 * agents * concurrency)
        h.log(
            f"throughput: {agents} agent(s) x {concurrency}, {flying} runs in flight, {seconds:.0f} s window"
        )
        result = await drive(world, workflow, token, in_flight=flying, seconds=seconds, warmup=warmup)
        result.update(agents=agents, agent_concurrency=concurrency, in_flight=flying)
        h.log(
            f"throughput: {agents} agent(s): {result['steps_per_s']} steps/s, coordinator CPU "
            f"{result['coordinator_cpu_pct']}%, RSS {result['coordinator_rss_mb']} MB"
        )
        return result
    finally:
        if own:
            world.close()
        else:
            world.agents.stop()


async def setup(world: h.World) -> tuple[list[str], str]:
    """The ``tput`` team, its contracts and chain (registered once per coordinator)."""
    if "tput" in world.tokens and getattr(world, "_tput", None):
        return world._tput  # type: ignore[attr-defined, no-any-return]
    contracts = [await world.contract("tput", f"step{i}") for i in range(1, STEPS + 1)]
    workflow = await world.chain("tput", "chain", contracts)
    world._tput = (contracts, workflow)  # type: ignore[attr-defined]
    return contracts, workflow


async def bench(
    agent_counts: list[int],
    concurrency: int = 8,
    seconds: float = 60.0,
    warmup: float = 5.0,
    in_flight: int | None = None,
) -> dict[str, Any]:
    results = [await one(n, concurrency, seconds, warmup, in_flight) for n in agent_counts]
    best = max((r["steps_per_s"] for r in results), default=0.0)
    return {
        "what": "three-step chain in one team, no-op python engine; steps of runs finished per second, "
        "sustained over the window, with N agent processes",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "settings": {"seconds": seconds, "warmup_s": warmup, "agent_concurrency": concurrency},
        "results": results,
        "best_steps_per_s": best,
        "target_steps_per_s": TARGET_STEPS_PER_S,
        "met": best >= TARGET_STEPS_PER_S,
    }


def format_result(result: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [
        (
            "agents",
            "steps/s",
            "run p50 ms",
            "run p99 ms",
            "coord CPU %",
            "CPU ms/step",
            "coord RSS MB",
            "agents CPU %",
            "client CPU %",
        )
    ]
    for r in result["results"]:
        rows.append(
            (
                f"{r['agents']} x {r['agent_concurrency']}",
                r["steps_per_s"],
                r["run_latency"]["p50_ms"],
                r["run_latency"]["p99_ms"],
                r["coordinator_cpu_pct"],
                r["coordinator_cpu_ms_per_step"],
                r["coordinator_rss_mb"],
                r["agents_cpu_pct"],
                r["client_cpu_pct"],
            )
        )
    verdict = "met" if result["met"] else "MISSED"
    return (
        h.table(rows)
        + f"\ntarget ≥ {TARGET_STEPS_PER_S:.0f} steps/s: {verdict} (best {result['best_steps_per_s']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured window per configuration (default 60)"
    )
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--agents", default="1,4,16", help="agent process counts (default 1,4,16)")
    parser.add_argument("--concurrency", type=int, default=8, help="task slots per agent (default 8)")
    parser.add_argument(
        "--in-flight", type=int, default=None, help="concurrent runs (default 2 x slots, ≥ 64)"
    )
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.agents.split(",") if x.strip()]
    result = asyncio.run(bench(counts, args.concurrency, args.seconds, args.warmup, args.in_flight))
    print(format_result(result))
    print(f"written: {h.write_result('throughput', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
