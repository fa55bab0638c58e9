"""A/B of the coordinator against an earlier commit, in one run: chain latency and CPU per step.

Both coordinators run on this machine in the same run, in alternating rounds (A, B, A, B, ...),
each round a fresh coordinator with the three-team chain of ``bench_hop`` (three agent processes
of the current tree, a no-op python engine, one run at a time). What is compared is the
coordinator: its CPU per step (from /proc, over the measured runs) and the chain's wall time
(p50, p99). The result is a ratio current / baseline per measure, the median over the rounds, so
the machine's load (shared, noisy) weighs on both alike.

    python -m benchmarks.bench_engine_ab --baseline 3dc9e0f [--rounds 4] [--runs 150]

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


async def round_(source: Path | None, runs: int, warmup: int) -> dict[str, float]:
    world = h.World.create("ab", source=source)
    try:
        contracts = [await world.contract(team, "step") for team in TEAMS]
        workflow = await world.chain(TEAMS[0], "chain", contracts)
        for team, contract in zip(TEAMS, contracts, strict=True):
            world.agents.start(team, world.tokens[team], world.coordinator.address, [contract], concurrency=4)
        await world.agents.wait_registered()
        async with world.coordinator.client(world.tokens[TEAMS[0]]) as client:
            for i in range(warmup):
                run = await h.run_to_end(client, workflow, {"n": i})
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            cpu0 = world.coordinator.cpu()
            samples = []
            for i in range(runs):
                t0 = time.perf_counter()
                run = await h.run_to_end(client, workflow, {"n": i})
                samples.append(time.perf_counter() - t0)
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            cpu = world.coordinator.cpu() - cpu0
        summary = h.summary_ms(samples)
        return {
            "p50_ms": summary["p50_ms"],
            "p99_ms": summary["p99_ms"],
            "cpu_ms_per_step": round(cpu * 1000 / (3 * runs), 3),
        }
    finally:
        world.close()


async def bench(baseline: str, rounds: int, runs: int, warmup: int) -> dict[str, Any]:
    tree = export(baseline)
    try:
        sides: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        for index in range(rounds):
            for side in ("baseline", "current") if index % 2 == 0 else ("current", "baseline"):
                h.log(f"engine A/B: round {index + 1}/{rounds}, {side}")
                sides[side].append(await round_(tree if side == "baseline" else None, runs, warmup))
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    measures = ("p50_ms", "p99_ms", "cpu_ms_per_step")
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
        "settings": {"baseline": baseline, "rounds": rounds, "runs": runs, "warmup": warmup},
        "rounds": sides,
        "ratio_current_to_baseline": ratios,
        "median": {
            side: {m: statistics.median(r[m] for r in results) for m in measures}
            for side, results in sides.items()
        },
    }


def format_result(result: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [("", "p50 ms", "p99 ms", "CPU ms/step")]
    for side in ("baseline", "current"):
        m = result["median"][side]
        rows.append((side, m["p50_ms"], m["p99_ms"], m["cpu_ms_per_step"]))
    r = result["ratio_current_to_baseline"]
    rows.append(("current/baseline", r["p50_ms"], r["p99_ms"], r["cpu_ms_per_step"]))
    return h.table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with (any git ref)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per side, alternating (default 4)")
    parser.add_argument("--runs", type=int, default=150, help="measured chain runs per round (default 150)")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.baseline, args.rounds, args.runs, args.warmup))
    print(format_result(result))
    h.write_result("engine_ab", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
