"""Temporal side of benchmarks/bench_versus.py; runs with benchmarks/.envs/temporal/bin/python.

Two roles, each its own process so their CPU is counted apart:

* ``worker``: a Temporal worker (the three-step chain workflow and its three no-op activities)
  on an already started dev server, until SIGTERM; touches ``--ready`` once it polls.
* ``client``: warm-up runs, then the chain one run at a time (latency), then ``--in-flight`` runs
  kept going for ``--seconds`` after ``--warmup-s`` (throughput). Over each measured phase it
  reads the CPU (user + system, /proc/<pid>/stat) of the processes of every ``--group NAME=PID,..``
  and its own (``time.process_time``). Prints one line ``PEER_RESULT <json>``.

The chain has the shape of Accord's benchmark chain: ``s1 → s2 → s3``, each step an activity
returning its input, the first reading the run's input, each next the previous step's output.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import signal
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

TASK_QUEUE = "accord-versus"
RESULT_PREFIX = "PEER_RESULT "
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@activity.defn
async def step1(payload: dict) -> dict:
    return payload


@activity.defn
async def step2(payload: dict) -> dict:
    return payload


@activity.defn
async def step3(payload: dict) -> dict:
    return payload


@workflow.defn(sandboxed=False)
class Chain:
    @workflow.run
    async def run(self, payload: dict) -> dict:
        options = {"start_to_close_timeout": timedelta(hours=2)}
        s1 = await workflow.execute_activity(step1, payload, **options)
        s2 = await workflow.execute_activity(step2, s1, **options)
        return await workflow.execute_activity(step3, s2, **options)


async def connect(port: int) -> Client:
    for attempt in range(120):  # the port opens a little before the frontend serves
        try:
            return await Client.connect(f"127.0.0.1:{port}", namespace="default")
        except Exception as exc:
            if attempt == 119:
                raise
            print(f"connect failed ({exc!r}), retrying", file=sys.stderr)
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- worker


async def worker_main(args: argparse.Namespace) -> dict:
    client = await connect(args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[Chain],
        activities=[step1, step2, step3],
        max_concurrent_activities=args.slots,
        max_concurrent_workflow_tasks=args.slots,
    )
    async with worker:
        Path(args.ready).write_text(str(os.getpid()))  # noqa: ASYNC240 - once, before serving
        await stop.wait()
    return {}


# ---------------------------------------------------------------- client


def _cpu_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _cpu_reading(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    reading = {name: {} for name in groups}
    for name, pids in groups.items():
        for pid in pids:
            cpu = _cpu_of(pid)
            if cpu is not None:
                reading[name][pid] = cpu
    return reading


def _cpu_spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    return {
        name: round(sum(cpu - before[name].get(pid, 0.0) for pid, cpu in seen.items()), 4)
        for name, seen in after.items()
    }


class Meter:
    """CPU of the named process groups and of this process over a phase."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def start(self) -> None:
        self.before = _cpu_reading(self.groups)
        self.own = time.process_time()
        self.t0 = time.monotonic()

    def stop(self) -> dict:
        spent = _cpu_spent(self.before, _cpu_reading(self.groups))
        spent["client"] = round(time.process_time() - self.own, 4)
        return {"cpu_s": spent, "elapsed_s": round(time.monotonic() - self.t0, 3)}


async def one_run(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    handle = await client.start_workflow(
        Chain.run,
        {"n": n},
        id=f"chain-{uuid.uuid4().hex}",
        task_queue=TASK_QUEUE,
        execution_timeout=timedelta(seconds=120),
    )
    result = await handle.result()
    elapsed = time.perf_counter() - t0
    if result != {"n": n}:
        raise RuntimeError(f"unexpected result {result!r}")
    return elapsed


async def client_main(args: argparse.Namespace) -> dict:
    groups = {}
    for spec in args.group:
        name, _, pids = spec.partition("=")
        groups[name] = [int(p) for p in pids.split(",") if p]
    meter = Meter(groups)
    client = await connect(args.port)
    out: dict = {}
    for i in range(args.warmup_runs):
        await asyncio.wait_for(one_run(client, -1 - i), 60)

    latencies: list[float] = []
    failed = 0
    last_error = ""
    deadline = time.monotonic() + args.latency_budget
    meter.start()
    for i in range(args.runs):
        if time.monotonic() > deadline:
            break
        try:
            latencies.append(await asyncio.wait_for(one_run(client, i), 60))
        except Exception as exc:  # counted and reported, the next run goes on
            failed += 1
            last_error = repr(exc)
    out["latency"] = {"latencies_s": latencies, "failed": failed, **meter.stop()}

    done_at: list[float] = []
    run_latencies: list[float] = []
    failed = 0
    stopping = False
    wave = asyncio.Event()  # set once as many runs as are in flight have finished

    async def loop(k: int) -> None:
        nonlocal failed, last_error
        i = 0
        while not stopping:
            try:
                elapsed = await asyncio.wait_for(one_run(client, k * 1_000_000 + i), 60)
            except Exception as exc:
                failed += 1
                last_error = repr(exc)
                await asyncio.sleep(0.05)  # a server gone would otherwise fail as fast as it can
                continue
            finally:
                i += 1
            done_at.append(time.monotonic())
            run_latencies.append(elapsed)
            if len(done_at) >= args.in_flight:
                wave.set()

    loops = [asyncio.create_task(loop(k)) for k in range(args.in_flight)]
    # Warm-up: --warmup-s, and beyond it until the first wave (as many runs as in flight) has
    # finished, at most --warmup-wave-max-s more (the same rule as Accord's side).
    started = time.monotonic()
    await asyncio.sleep(args.warmup_s)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wave.wait(), args.warmup_wave_max_s)
    warmed_s = time.monotonic() - started
    first = len(done_at)
    failed0 = failed
    meter.start()
    window_start = time.monotonic()
    await asyncio.sleep(args.seconds)
    window_end = time.monotonic()
    phase = meter.stop()
    in_window = sum(1 for t in done_at[first:] if t <= window_end)
    failed_in_window = failed - failed0
    stopping = True
    # The loops end by themselves once their run in flight ends: the workflows are not left
    # running on the server when the next side's round starts.
    await asyncio.gather(*loops, return_exceptions=True)
    out["throughput"] = {
        "runs": in_window,
        "failed": failed_in_window,
        "window_s": round(window_end - window_start, 3),
        "warmup_s": round(warmed_s, 3),
        "run_latencies_s": run_latencies[first : first + in_window],
        **phase,
    }
    out["last_error"] = last_error or None
    return out


def main() -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=False)  # `kill -USR1`: where it is, in its log
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("worker", "client"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--ready", default="")
    parser.add_argument("--group", action="append", default=[], help="NAME=PID,PID,...")
    parser.add_argument("--warmup-runs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--latency-budget", type=float, default=120.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--warmup-wave-max-s", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "worker":
        asyncio.run(worker_main(args))
        sys.stdout.flush()
        os._exit(0)  # as below: the worker has stopped; do not wait on the core's threads
    result = asyncio.run(client_main(args))
    import temporalio

    result["versions"] = {"temporalio": temporalio.__version__}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    # Seen here: the interpreter's exit waiting forever on the SDK core's runtime threads after
    # the answer was printed (and aborting in the worker); nothing is left to do, so leave
    # without that shutdown.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
