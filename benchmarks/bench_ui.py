"""Benchmark of the tracing UI with real volumes (not a test).

Fills a coordinator's SQLite store with 100,000 runs (three teams, mixed statuses) plus one
failed run whose trace has 500 spans, starts the REAL coordinator on it with the UI, signs in,
and times the JSON endpoints the pages call:

- the run list: first page, a status filter, a team filter, a free-text search, and a deep page
  reached through the keyset cursor;
- the run page of the 500-span run: /api/v1/runs/{id} + /api/v1/runs/{id}/trace.

Prints each median next to its target (ratio = median / target; below 1 is within target) and
writes benchmarks/results/ui.json.

    .venv/bin/python -m benchmarks.bench_ui [--runs 100000] [--spans 500] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from coordinator.store.records import RUN_FAILED, Changes, RunRecord, SpanRecord, StepRecord, TaskFailure
from coordinator.store.sqlite import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results" / "ui.json"
TARGETS_MS = {"run_page": 300.0, "run_list": 100.0}
TEAMS = ("payments", "warehouse", "shipping")
STATUSES = ("succeeded",) * 6 + ("failed", "cancelled", "running")


def _run(i: int, now_ms: int, rnd: random.Random) -> RunRecord:
    status = rnd.choice(STATUSES)
    created = now_ms - i * 1000 - rnd.randrange(0, 500)
    return RunRecord(
        run_id=f"run-bench-{i:06d}",
        workflow="shipping/order-to-cash",
        workflow_version=1,
        team="shipping",
        status=status,
        input={"order_id": f"o-{i}", "amount_cents": 100 + i % 1000},
        created_ms=created,
        trace_id=f"{i:032x}",
        span_id=f"{i:016x}",
        idempotency_key=f"order-{i}",
        caller_team="shipping",
        started_by="shipping",
        finished_ms=0 if status == "running" else created + rnd.randrange(200, 5000),
        involved_teams=TEAMS,
        error=TaskFailure("CommandFailed", "exit 1") if status == "failed" else None,
    )


def _big_trace(trace_id: str, run_id: str, start_ns: int, count: int, rnd: random.Random) -> list[SpanRecord]:
    spans = [
        SpanRecord(
            trace_id,
            "f" * 16,
            "",
            "run shipping/order-to-cash",
            start_ns,
            start_ns + 30 * 10**9,
            status="error",
            run_id=run_id,
        )
    ]
    for i in range(count - 1):
        team = TEAMS[i % 3]
        begin = start_ns + rnd.randrange(0, 28 * 10**9)
        parent = spans[0].span_id if i < 20 else spans[rnd.randrange(1, len(spans))].span_id
        spans.append(
            SpanRecord(
                trace_id,
                f"{i + 1:016x}",
                parent,
                f"engine.step {i}",
                begin,
                begin + rnd.randrange(10**6, 2 * 10**9),
                team=team,
                service=f"{team}-agent",
                status="error" if i == count - 2 else "ok",
                attributes={"accord.run_id": run_id, "accord.step_id": f"s{i % 3}", "i": i},
                run_id=run_id,
            )
        )
    return spans


async def fill(db: Path, runs: int, spans: int) -> str:
    store = SqliteStore(db)
    await store.open()
    rnd = random.Random(42)
    now_ms = int(time.time() * 1000)
    batch: list[RunRecord] = []
    for i in range(runs):
        batch.append(_run(i, now_ms, rnd))
        if len(batch) == 5000:
            await store.apply(Changes(runs=batch))
            batch = []
    if batch:
        await store.apply(Changes(runs=batch))
    big = _run(runs, now_ms + 5000, rnd)
    big.run_id, big.status, big.finished_ms = "run-bench-500-spans", RUN_FAILED, big.created_ms + 30_000
    steps = [
        StepRecord(
            big.run_id, f"s{k}", f"s{k}", f"{team}/work", "1.0.0", team, "succeeded", f"k{k}", f"{k:016x}"
        )
        for k, team in enumerate(TEAMS)
    ]
    await store.apply(Changes(runs=[big], steps=steps))
    await store.insert_spans(_big_trace(big.trace_id, big.run_id, big.created_ms * 10**6, spans, rnd))
    await store.close()
    return big.run_id


async def timed(client: httpx.AsyncClient, path: str, repeat: int) -> dict[str, float]:
    wall: list[float] = []
    server: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path)
        wall.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        server.append(float(response.json().get("server_ms", 0.0)))
    return {
        "median_ms": statistics.median(wall),
        "p90_ms": sorted(wall)[int(len(wall) * 0.9) - 1],
        "server_ms": statistics.median(server),
    }


async def measure(ui: str, admin_token: str, big_run: str, repeat: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=ui, timeout=60) as client:
        response = await client.post("/api/v1/session", json={"token": admin_token}, headers={"Origin": ui})
        response.raise_for_status()
        first = (await client.get("/api/v1/runs?limit=50")).json()
        cursor = first["next_cursor"]
        for _ in range(20):  # walk 20 pages deep through the keyset cursor
            cursor = (await client.get(f"/api/v1/runs?limit=50&cursor={cursor}")).json()["next_cursor"]
        results = {
            "list_first_page": await timed(client, "/api/v1/runs?limit=50", repeat),
            "list_status_failed": await timed(client, "/api/v1/runs?limit=50&status=failed", repeat),
            "list_team_filter": await timed(client, "/api/v1/runs?limit=50&team=warehouse", repeat),
            "list_free_text": await timed(client, "/api/v1/runs?limit=50&q=order-99", repeat),
            "list_deep_keyset_page": await timed(client, f"/api/v1/runs?limit=50&cursor={cursor}", repeat),
            "run_detail_500_spans": await timed(client, f"/api/v1/runs/{big_run}", repeat),
            "run_trace_500_spans": await timed(client, f"/api/v1/runs/{big_run}/trace", repeat),
        }
        trace = (await client.get(f"/api/v1/runs/{big_run}/trace")).json()
        assert trace["span_count"] >= 500, trace["span_count"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="accord-bench-ui-") as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        big_run = asyncio.run(fill(home / "coordinator.db", args.runs, args.spans))
        fill_s = time.perf_counter() - started
        print(f"filled {args.runs} runs + a {args.spans}-span run in {fill_s:.1f}s", file=sys.stderr)
        accord = str(Path(sys.executable).parent / "accord")
        env = {**os.environ, "ACCORD_HOME": str(home)}
        log = open(home / "coordinator.log", "wb")
        proc = subprocess.Popen(
            [
                accord,
                "coordinator",
                "start",
                "--listen",
                "127.0.0.1:0",
                "--ui",
                "127.0.0.1:0",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            state: dict[str, Any] = {}
            while time.monotonic() < deadline and "ui" not in state:
                try:
                    state = json.loads((home / "coordinator.json").read_text())
                except (OSError, ValueError):
                    time.sleep(0.05)
            if "ui" not in state:
                raise SystemExit(f"coordinator did not start:\n{(home / 'coordinator.log').read_text()}")
            admin = (home / "admin.token").read_text().strip()
            results = asyncio.run(measure(f"http://{state['ui']}", admin, big_run, args.repeat))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
            log.close()
    run_page = results["run_detail_500_spans"]["median_ms"] + results["run_trace_500_spans"]["median_ms"]
    list_worst = max(v["median_ms"] for k, v in results.items() if k.startswith("list_"))
    summary = {
        "runs_stored": args.runs,
        "spans_in_run": args.spans,
        "repeat": args.repeat,
        "endpoints": results,
        "run_page_ms": run_page,
        "run_page_target_ms": TARGETS_MS["run_page"],
        "run_page_ratio": run_page / TARGETS_MS["run_page"],
        "run_list_worst_ms": list_worst,
        "run_list_target_ms": TARGETS_MS["run_list"],
        "run_list_ratio": list_worst / TARGETS_MS["run_list"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for name, value in results.items():
        print(
            f"{name:26s} median {value['median_ms']:8.1f} ms   p90 {value['p90_ms']:8.1f} ms   (UI server {value['server_ms']:.1f} ms)"
        )
    print(
        f"run page (detail + trace, {args.spans} spans): {run_page:.1f} ms, target {TARGETS_MS['run_page']:.0f} ms, ratio {summary['run_page_ratio']:.2f}"
    )
    print(
        f"run list (worst filter, {args.runs} runs):     {list_worst:.1f} ms, target {TARGETS_MS['run_list']:.0f} ms, ratio {summary['run_list_ratio']:.2f}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
