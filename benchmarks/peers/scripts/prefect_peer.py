"""Prefect 3 side of the peer benchmark; runs with benchmarks/.envs/prefect/bin/python.

Local ephemeral mode (no PREFECT_API_URL; PREFECT_HOME is a temp dir set by the
driver): Prefect starts its own temporary API server on 127.0.0.1 as a child of
this process.  A flow calls three no-op tasks in sequence.  Measures:
  * latency: N sequential flow runs, call -> return
  * throughput: C threads running flows back to back for S seconds, task runs / s
Prints one line "PEER_RESULT <json>" on stdout.  Every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from prefect import flow, task


@task
def step_a(payload: dict) -> dict:
    return {"step": "a", "req": payload.get("req")}


@task
def step_b(payload: dict) -> dict:
    return {"step": "b", "req": payload.get("req")}


@task
def step_c(payload: dict) -> dict:
    return {"step": "c", "req": payload.get("req")}


@flow
def chain(req: str) -> dict:
    # Synchronous flow and tasks: Prefect's common path.  (Async flows called in
    # sequence were measured slower here, ~2 s each, with no throughput gain.)
    a = step_a({"req": req})
    b = step_b(a)
    return step_c(b)


def one_run(req: str) -> float:
    t0 = time.perf_counter()
    result = chain(req)
    dt = time.perf_counter() - t0
    assert result["step"] == "c", result
    return dt


def main(args: argparse.Namespace) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    one_run("first")  # includes the ephemeral server's start
    out["first_run_s"] = round(time.perf_counter() - t0, 2)
    for i in range(args.warmup):
        one_run(f"warm-{i}")

    lat: list[float] = []
    errors = 0
    lat_deadline = time.monotonic() + args.latency_budget
    for i in range(args.runs):
        if time.monotonic() > lat_deadline:
            break
        try:
            lat.append(one_run(f"lat-{i}"))
        except Exception as exc:
            errors += 1
            print(f"latency run {i} failed: {exc!r}", file=sys.stderr)
    out["latencies_s"] = lat
    out["latency_errors"] = errors

    # Throughput: C threads each running flows back to back until the window ends.
    stop_at = time.monotonic() + args.seconds
    lock = threading.Lock()
    counts = {"done": 0, "failed": 0}

    def loop(k: int) -> None:
        for j in range(args.max_runs_per_loop):
            if time.monotonic() >= stop_at:
                return
            try:
                one_run(f"tp-{k}-{j}")
                key = "done" if time.monotonic() <= stop_at else "late"
            except Exception as exc:
                key = "failed"
                print(f"throughput run failed: {exc!r}", file=sys.stderr)
            with lock:
                counts[key] = counts.get(key, 0) + 1

    t1 = time.monotonic()
    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(args.concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=args.seconds + 120)
    elapsed = min(time.monotonic(), stop_at) - t1
    out.update(
        throughput_runs=counts["done"],
        throughput_failed=counts["failed"],
        throughput_window_s=round(elapsed, 3),
        steps_per_s=round(counts["done"] * 3 / elapsed, 2) if elapsed > 0 else None,
        concurrency=args.concurrency,
    )
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency-budget", type=float, default=300.0)
    p.add_argument("--max-runs-per-loop", type=int, default=100000)
    a = p.parse_args()
    res = main(a)
    import prefect

    res["versions"] = {"prefect": prefect.__version__}
    print("PEER_RESULT " + json.dumps(res), flush=True)
