"""A/B of the coordinator (and its agents) against an earlier commit, in one run.

Both sides run on this machine in the same run, in alternating rounds (A, B, B, A, ...), each
round a fresh coordinator with the three-team chain of ``bench_hop`` (three agent processes, a
no-op python engine). Each round has two phases:

- *latency*: one run at a time (``--runs``): the chain's wall time (p50, p99) and the
  coordinator's CPU per step (from /proc, over the measured runs);
- *load* (``--load-seconds``, 0 leaves it out): ``--in-flight`` runs kept going, after a warm-up
  of 3 s: steps/s, and the CPU per step of the coordinator and of the agents over the window.

The agents are the current tree's on both sides, unless ``--agents both``: then each side's agents
are its own tree's, so a change to the agent is measured too. The result is a ratio current /
baseline per measure, the median over the rounds, so the machine's load (shared, noisy) weighs on
both alike.

    python -m benchmarks.bench_engine_ab --baseline 3dc9e0f [--rounds 4] [--runs 150]
        [--load-seconds 10] [--in-flight 64] [--agents current|both] [--payload-kb 0]

The baseline is exported with ``git archive`` into a temporary directory and run with this
venv's packages. Writes benchmarks/results/engine_ab.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _harness as h
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

TEAMS = ("ab-a", "ab-b", "ab-c")


def export(ref: str) -> Path:
    """The tree of ``ref`` in a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="accord-baseline-"))
    archive = subprocess.run(["git", "archive", ref], cwd=h.REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


async def round_(
    source: Path | None,
    runs: int,
    warmup: int,
    *,
    load_s: float = 0.0,
    in_flight: int = 64,
    agents_source: Path | None = None,
    payload_kb: int = 0,
) -> dict[str, float]:
    world = h.World.create("ab", source=source)
    world.agents.source = agents_source
    try:
        contracts = [await world.contract(team, "step") for team in TEAMS]
        workflow = await world.chain(TEAMS[0], "chain", contracts)
        for team, contract in zip(TEAMS, contracts, strict=True):
            world.agents.start(
                team, world.tokens[team], world.coordinator.address, [contract], concurrency=16
            )
        await world.agents.wait_registered()
        async with world.coordinator.client(world.tokens[TEAMS[0]]) as client:
            for i in range(warmup):
                run = await h.run_to_end(client, workflow, h.run_input(i, payload_kb))
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            cpu0 = world.coordinator.cpu()
            samples = []
            for i in range(runs):
                t0 = time.perf_counter()
                run = await h.run_to_end(client, workflow, h.run_input(i, payload_kb))
                samples.append(time.perf_counter() - t0)
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            cpu = world.coordinator.cpu() - cpu0
            summary = h.summary_ms(samples)
            result = {
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "cpu_ms_per_step": round(cpu * 1000 / (3 * runs), 3),
            }
            if load_s > 0:
                result.update(await _load(world, client, workflow, load_s, in_flight, payload_kb))
            return result
    finally:
        world.close()


async def _load(
    world: h.World, client: Any, workflow: str, seconds: float, in_flight: int, payload_kb: int = 0
) -> dict[str, float]:
    """``in_flight`` chains kept going; over ``seconds`` after a 3 s warm-up: steps/s and CPU per
    step of the coordinator and of the agents (steps of the runs that ended in the window)."""
    ended: list[float] = []
    stop_at = time.monotonic() + 3.0 + seconds

    async def keep_going(k: int) -> None:
        i = 0
        while time.monotonic() < stop_at:
            run = await h.run_to_end(client, workflow, h.run_input(k * 1_000_000 + i, payload_kb))
            i += 1
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            ended.append(time.monotonic())

    workers = [asyncio.create_task(keep_going(k)) for k in range(in_flight)]
    try:
        await asyncio.sleep(3.0)
        start, first = time.monotonic(), len(ended)
        cpu0 = world.coordinator.cpu()
        agents0 = sum(h.cpu_seconds(p) for p in world.agents.pids())
        await asyncio.sleep(seconds)
        end = time.monotonic()
        cpu = world.coordinator.cpu() - cpu0
        agents = sum(h.cpu_seconds(p) for p in world.agents.pids()) - agents0
        steps = 3 * sum(1 for t in ended[first:] if t <= end)
    finally:
        await asyncio.gather(*workers)
    return {
        "load_steps_per_s": round(steps / (end - start), 1),
        "load_cpu_ms_per_step": round(cpu * 1000 / max(steps, 1), 3),
        "load_agents_cpu_ms_per_step": round(agents * 1000 / max(steps, 1), 3),
    }


LOAD_MEASURES = ("load_steps_per_s", "load_cpu_ms_per_step", "load_agents_cpu_ms_per_step")


async def bench(
    baseline: str,
    rounds: int,
    runs: int,
    warmup: int,
    *,
    load_s: float = 0.0,
    in_flight: int = 64,
    agents: str = "current",
    payload_kb: int = 0,
) -> dict[str, Any]:
    tree = export(baseline)
    try:
        sides: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        for index in range(rounds):
            for side in ("baseline", "current") if index % 2 == 0 else ("current", "baseline"):
                h.log(f"engine A/B: round {index + 1}/{rounds}, {side}")
                source = tree if side == "baseline" else None
                sides[side].append(
                    await round_(
                        source,
                        runs,
                        warmup,
                        load_s=load_s,
                        in_flight=in_flight,
                        agents_source=source if agents == "both" else None,
                        payload_kb=payload_kb,
                    )
                )
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    measures = ("p50_ms", "p99_ms", "cpu_ms_per_step", *(LOAD_MEASURES if load_s > 0 else ()))
    ratios = {
        m: round(
            statistics.median(
                c[m] / b[m] for b, c in zip(sides["baseline"], sides["current"], strict=True) if b[m]
            ),
            3,
        )
        for m in measures
    }
    return {
        "what": "coordinator of the current tree vs a baseline commit, alternating rounds in one run: "
        "three-step chain, one run at a time; ratios current/baseline (median over rounds)",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "settings": {
            "baseline": baseline,
            "rounds": rounds,
            "runs": runs,
            "warmup": warmup,
            "load_seconds": load_s,
            "in_flight": in_flight,
            "agents": agents,
            "payload_kb": payload_kb,
        },
        "rounds": sides,
        "ratio_current_to_baseline": ratios,
        "median": {
            side: {m: round(statistics.median(r[m] for r in results), 3) for m in measures}
            for side, results in sides.items()
        },
    }


def format_result(result: dict[str, Any]) -> str:
    load = result["settings"].get("load_seconds", 0) > 0
    header: tuple[Any, ...] = ("", "p50 ms", "p99 ms", "CPU ms/step")
    if load:
        header += ("load steps/s", "load CPU ms/step", "agents CPU ms/step")
    keys = ("p50_ms", "p99_ms", "cpu_ms_per_step", *(LOAD_MEASURES if load else ()))
    rows: list[tuple[Any, ...]] = [header]
    for side in ("baseline", "current"):
        rows.append((side, *(result["median"][side][k] for k in keys)))
    ratios = result["ratio_current_to_baseline"]
    rows.append(("current/baseline", *(ratios[k] for k in keys)))
    return h.table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with (any git ref)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per side, alternating (default 4)")
    parser.add_argument("--runs", type=int, default=150, help="measured chain runs per round (default 150)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--load-seconds", type=float, default=0.0, help="each round's load window (default 0: no load phase)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=64, help="runs kept going in the load phase (default 64)"
    )
    parser.add_argument(
        "--agents",
        choices=("current", "both"),
        default="current",
        help="whose agents: the current tree's on both sides (default), or each side's own",
    )
    h.add_payload_kb(parser)
    args = parser.parse_args(argv)
    result = asyncio.run(
        bench(
            args.baseline,
            args.rounds,
            args.runs,
            args.warmup,
            load_s=args.load_seconds,
            in_flight=args.in_flight,
            agents=args.agents,
            payload_kb=args.payload_kb,
        )
    )
    print(format_result(result))
    h.write_result("engine_ab", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
