"""Scale: throughput with 1,000, 10,000 and 100,000 finished runs stored, and memory with 10,000
runs waiting on a slow step.

History. One coordinator; first a baseline with nothing stored, then the history is grown to each
level and the coordinator restarted on it before measuring again. The history is written straight
into the SQLite file while the coordinator is stopped, by SQL inserts cloned from a real run: one
three-step chain is run through the real system first, and its rows in ``runs``, ``steps``,
``attempts``, ``spans`` (the coordinator's and the agents' exported spans) and ``audit`` are copied
with a new run id, trace id and creation time per clone (two days ago, inside the span
retention, so the start-up prune keeps them), in one
transaction per 10,000 runs. So the stored history has exactly the shape the coordinator itself
writes, at ~10⁴-10⁵ runs/s instead of hours of real runs. At each level: the sustained throughput
of bench_throughput's chain (4 agents x 8 by default), the coordinator's CPU per step, its start-up
time (it loads only non-terminal runs), and two reads a user makes: the first page of ListRuns and
GetRun of an old run. "Flat" means the ratios to the baseline stay near 1.

Waiting. A fresh coordinator, one agent serving ``slowq/wait@1`` whose engine never answers within
the benchmark (``benchmarks:slow``, concurrency 16), and 10,000 one-step runs started on it: 16
run, the rest wait in the queue. The coordinator's RSS before and after gives the memory per
waiting run; a few chains on another team are timed meanwhile, to show a deep queue elsewhere does
not slow them.

Size. Bytes a finished three-step run leaves in the SQLite store (pages of its tables and their
indexes, by SQLite's dbstat, before and after N runs), apart for spans (the coordinator's and its
agents'): targets 4 KB and 6 KB. Then a steady load with a short ``--retention`` (and span
retention; the audit log keeps its default 400 days, as in production). The load runs for three
retention periods, pauses until retention has deleted every run of it (the runs table is empty:
what is left is what the store keeps for good), and each table's bytes (dbstat) and rows are taken:
the start. Then it runs for ``--steady`` seconds, pauses the same way, and they are taken again: the
end. In between, every two seconds, the file's size and the tables' bytes (informative: they move
with the runs inside the retention, and so with the shared machine's load). What a run leaves for
good is (end - start) / the runs finished in between, and ``growth_ratio`` the end's bytes over the
start's; flat: at most ``FLAT_TOLERANCE`` more. A store that keeps anything per run for longer than
the retention (a digest, an audit entry) shows it: thousands of runs go through the steady phase.

Run: ``python -m benchmarks.bench_scale [--levels 1000,10000,100000] [--seconds 30] [--waiting 10000]
[--size-runs 500] [--steady 60] [--retention 5]``
→ benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _harness as h
from benchmarks import bench_throughput as bt
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.store import codec

DAY_MS = 86_400_000


# ---------------------------------------------------------------- filling the store


class Template:
    """The rows of one finished run, to be cloned."""

    def __init__(self, db: Path, run_id: str) -> None:
        with sqlite3.connect(db) as conn:
            cursor = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            row = cursor.fetchone()
            self.run = list(row)
            # Positions by name: columns are added to the table over the schema's versions.
            names = [d[0] for d in cursor.description]
            self.created_at, self.finished_at, self.data_at, self.key_at = (
                names.index(name) for name in ("created_ms", "finished_ms", "data_json", "idempotency_key")
            )
            self.data = json.loads(row[self.data_at])
            self.steps = [list(r) for r in conn.execute("SELECT * FROM steps WHERE run_id = ?", (run_id,))]
            self.attempts = [
                list(r) for r in conn.execute("SELECT * FROM attempts WHERE run_id = ?", (run_id,))
            ]
            self.trace_id = self.data["trace_id"]
            # Span ids are stored as bytes (coordinator/store/codec.py), or hex text in older rows.
            self.spans = [
                list(r)
                for r in conn.execute(
                    "SELECT * FROM spans WHERE trace_id IN (?, ?)",
                    (codec.span_id_to_db(self.trace_id), self.trace_id),
                )
            ]
            self.audit = [
                list(r)[1:]
                for r in conn.execute(
                    "SELECT * FROM audit WHERE object = ? AND action = 'run.start'", (run_id,)
                )
            ]
        self.run_id = run_id
        self.created_ms = self.data["created_ms"]


def _swap(value: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
    elif isinstance(value, bytes):  # a trace id stored as bytes
        for old, new in pairs:
            if value == codec.span_id_to_db(old):
                value = codec.span_id_to_db(new)
    return value


def fill(db: Path, template: Template, start: int, count: int, *, batch: int = 10_000) -> float:
    """Insert clones ``start .. start+count-1`` of ``template``; seconds taken."""
    t0 = time.monotonic()
    rng = random.Random(start)
    now = int(time.time() * 1000)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    date = template.run_id.split("-")[1]
    duration = template.data["finished_ms"] - template.data["created_ms"]
    try:
        for first in range(start, start + count, batch):
            runs, steps, attempts, spans, audit = [], [], [], [], []
            for i in range(first, min(first + batch, start + count)):
                run_id = f"run-{date}-b{i:011x}"
                trace_id = f"{rng.getrandbits(128):032x}"
                # Two days ago, 1 ms apart: inside the span retention (7 days by default), so the
                # coordinator's start-up prune does not delete the cloned spans while we measure.
                created = now - 2 * DAY_MS + i
                shift_ns = (created - template.created_ms) * 1_000_000
                pairs = [(template.run_id, run_id), (template.trace_id, trace_id)]
                data = dict(
                    template.data,
                    run_id=run_id,
                    trace_id=trace_id,
                    created_ms=created,
                    finished_ms=created + duration,
                )
                row = [_swap(v, pairs) for v in template.run]
                row[template.created_at], row[template.finished_at] = created, created + duration
                if row[template.key_at]:  # unique per caller and workflow (a request id serves as one)
                    row[template.key_at] = f"{row[template.key_at]}-{i}"
                row[template.data_at] = json.dumps(data, separators=(",", ":"))
                runs.append(row)
                steps += [[_swap(v, pairs) for v in r] for r in template.steps]
                attempts += [[_swap(v, pairs) for v in r] for r in template.attempts]
                for r in template.spans:
                    clone = [_swap(v, pairs) for v in r]
                    clone[4] += shift_ns  # start_ns
                    clone[5] += shift_ns  # end_ns
                    spans.append(clone)
                for r in template.audit:
                    clone = [_swap(v, pairs) for v in r]
                    clone[0] = created
                    audit.append(clone)
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO runs VALUES ({','.join('?' * len(template.run))})", runs)
            if steps:
                conn.executemany(f"INSERT INTO steps VALUES ({','.join('?' * len(steps[0]))})", steps)
            if attempts:
                conn.executemany(
                    f"INSERT INTO attempts VALUES ({','.join('?' * len(attempts[0]))})", attempts
                )
            if spans:
                conn.executemany(f"INSERT INTO spans VALUES ({','.join('?' * len(spans[0]))})", spans)
            if audit:
                conn.executemany(
                    "INSERT INTO audit (at_ms, actor, action, object, owner_team, platform_intervention, details_json)"
                    " VALUES (?,?,?,?,?,?,?)",
                    audit,
                )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.monotonic() - t0


# ---------------------------------------------------------------- reads


async def read_latencies(world: h.World, old_run: str, calls: int = 50) -> dict[str, Any]:
    async with world.coordinator.client(world.tokens["tput"]) as client:
        list_s, get_s = [], []
        for _ in range(calls):
            t0 = time.perf_counter()
            await client.coordinator.ListRuns(pb.ListRunsRequest())
            list_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await client.coordinator.GetRun(pb.GetRunRequest(run_id=old_run))
            get_s.append(time.perf_counter() - t0)
    return {
        "list_runs_p50_ms": h.summary_ms(list_s)["p50_ms"],
        "get_old_run_p50_ms": h.summary_ms(get_s)["p50_ms"],
    }


async def history(
    levels: list[int], seconds: float, warmup: float, agents: int, concurrency: int
) -> list[dict[str, Any]]:
    world = h.World.create("scale")
    try:
        contracts, workflow = await bt.setup(world)
        token = world.tokens["tput"]
        # The template: one real run, its agent spans exported before the agent stops.
        world.agents.start("tput", token, world.coordinator.address, contracts, concurrency=2)
        await world.agents.wait_registered()
        async with world.coordinator.client(token) as client:
            run = await h.run_to_end(client, workflow, {"n": 1})
        world.agents.stop()
        await asyncio.sleep(0.5)
        world.coordinator.stop()
        template = Template(world.coordinator.db, run.run_id)
        h.log(
            f"scale: template run {template.run_id}: {len(template.steps)} steps, {len(template.spans)} spans"
        )
        stored = 0
        results = []
        for level in [0, *levels]:
            fill_s = 0.0
            if level > stored:
                h.log(f"scale: storing {level - stored} more finished runs")
                fill_s = fill(world.coordinator.db, template, stored, level - stored)
                stored = level
            world.coordinator.start()
            startup_s = world.coordinator.started_s
            reads = await read_latencies(world, template.run_id)
            result = await bt.one(agents, concurrency, seconds, warmup, None, world=world)
            result.update(
                stored_runs=level,
                fill_s=round(fill_s, 1),
                startup_s=round(startup_s, 2),
                db_mb=round(
                    sum(p.stat().st_size for p in world.coordinator.home.glob("coordinator.db*")) / 2**20, 1
                ),
                **reads,
            )
            results.append(result)
            world.coordinator.stop()
        base = results[0]
        for r in results:
            r["steps_per_s_ratio"] = (
                round(r["steps_per_s"] / base["steps_per_s"], 2) if base["steps_per_s"] else None
            )
            if r["coordinator_cpu_ms_per_step"] and base["coordinator_cpu_ms_per_step"]:
                r["cpu_per_step_ratio"] = round(
                    r["coordinator_cpu_ms_per_step"] / base["coordinator_cpu_ms_per_step"], 2
                )
        return results
    finally:
        world.close()


# ---------------------------------------------------------------- waiting runs


async def waiting(count: int, in_flight: int = 64, probes: int = 30) -> dict[str, Any]:
    world = h.World.create("waiting")
    try:
        slow = await world.contract("slowq", "wait")
        slow_flow = await world.chain("slowq", "flow", [slow])
        contracts, workflow = await bt.setup(world)
        world.agents.start(
            "slowq",
            world.tokens["slowq"],
            world.coordinator.address,
            [slow],
            concurrency=16,
            callable_="benchmarks:slow",
        )
        world.agents.start("tput", world.tokens["tput"], world.coordinator.address, contracts, concurrency=4)
        await world.agents.wait_registered()
        coordinator = world.coordinator
        async with coordinator.client(world.tokens["tput"]) as client:
            before_probe = [await _timed_chain(client, workflow) for _ in range(probes)]
        rss0 = coordinator.rss()
        t0 = time.monotonic()
        async with coordinator.client(world.tokens["slowq"]) as client:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(count):
                queue.put_nowait(i)

            async def starter() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    await h.start_run(client, slow_flow, {"n": i})

            await asyncio.gather(*[starter() for _ in range(in_flight)])
        start_s = time.monotonic() - t0
        await asyncio.sleep(2)
        rss1 = coordinator.rss()
        async with coordinator.client(world.tokens["tput"]) as client:
            during_probe = [await _timed_chain(client, workflow) for _ in range(probes)]
        return {
            "waiting_runs": count,
            "started_in_s": round(start_s, 1),
            "start_runs_per_s": round(count / start_s, 1),
            "rss_before_mb": round(rss0 / 2**20, 1),
            "rss_after_mb": round(rss1 / 2**20, 1),
            "kb_per_waiting_run": round((rss1 - rss0) / count / 1024, 2),
            "chain_p50_ms_before": h.summary_ms(before_probe)["p50_ms"],
            "chain_p50_ms_while_waiting": h.summary_ms(during_probe)["p50_ms"],
        }
    finally:
        world.close()


async def _timed_chain(client: Any, workflow: str) -> float:
    t0 = time.perf_counter()
    run = await h.run_to_end(client, workflow, {"n": 0})
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    return time.perf_counter() - t0


# ---------------------------------------------------------------- bytes per run, and retention

# The tables a run writes to (spans apart): what it costs the store, indexes included.
RUN_TABLES = ("runs", "steps", "attempts", "requests", "audit", "events", "timers", "offers")
SPAN_TABLES = ("spans",)
SIZE_TARGET_BYTES = {"without_spans": 4096, "spans": 6144}


def table_bytes(db: Path) -> dict[str, int]:
    """Bytes of the pages of each table, its indexes counted with it (SQLite's dbstat)."""
    conn = sqlite3.connect(db)
    try:
        owner = {name: table for table, name in conn.execute("SELECT tbl_name, name FROM sqlite_master")}
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + int(size)
        return sizes
    finally:
        conn.close()


def _group(sizes: dict[str, int], tables: tuple[str, ...]) -> int:
    return sum(sizes.get(t, 0) for t in tables)


def db_file_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if not p.name.endswith(".lock"))


async def _drive(world: h.World, workflow: str, runs: int, in_flight: int) -> float:
    """Run ``runs`` chains to the end, ``in_flight`` at a time; seconds taken."""
    t0 = time.monotonic()
    async with world.coordinator.client(world.tokens["tput"]) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(runs):
            queue.put_nowait(i)

        async def one() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                run = await h.run_to_end(client, workflow, {"n": i})
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run

        await asyncio.gather(*[one() for _ in range(in_flight)])
    return time.monotonic() - t0


async def size(runs: int, steady_s: float, retention_s: float, in_flight: int = 8) -> dict[str, Any]:
    """Bytes a finished three-step run leaves in the store (with its agents' spans), and the
    database's size over a steady load once retention applies."""
    world = h.World.create("size")
    try:
        contracts, workflow = await bt.setup(world)
        db = world.coordinator.db
        before = table_bytes(db)
        world.agents.start("tput", world.tokens["tput"], world.coordinator.address, contracts, concurrency=8)
        await world.agents.wait_registered()
        await _drive(world, workflow, runs, in_flight)
        world.agents.stop()  # their last spans are exported as they stop
        world.coordinator.stop()
        after = table_bytes(db)
        per_run = {
            "without_spans": round((_group(after, RUN_TABLES) - _group(before, RUN_TABLES)) / runs),
            "spans": round((_group(after, SPAN_TABLES) - _group(before, SPAN_TABLES)) / runs),
        }
        per_table = {t: round((after.get(t, 0) - before.get(t, 0)) / runs) for t in RUN_TABLES + SPAN_TABLES}
        h.log(f"size: bytes per finished run {per_run} ({per_table})")

        # Steady load with a short retention: the database grows until retention starts deleting,
        # then should stay where it is.
        world.coordinator.extra_args = [
            "--retention",
            f"{retention_s:g}s",
            "--span-retention",
            f"{retention_s:g}s",
        ]
        world.coordinator.start()
        world.agents.start("tput", world.tokens["tput"], world.coordinator.address, contracts, concurrency=8)
        await world.agents.wait_registered()
        return {
            "runs": runs,
            "bytes_per_run": per_run,
            "bytes_per_run_by_table": per_table,
            "target_bytes": SIZE_TARGET_BYTES,
            "met": all(per_run[k] <= v for k, v in SIZE_TARGET_BYTES.items()),
            "steady": await steady(world, workflow, steady_s, retention_s, in_flight),
        }
    finally:
        world.close()


# The share the database may grow by over the steady phase and still be flat: what pages left
# partly full by deletes, and a new part of a day in the autonomy report's aggregates, add.
FLAT_TOLERANCE = 0.05
COUNTED_TABLES = (*RUN_TABLES, *SPAN_TABLES, "run_days", "policies")


def table_rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        found = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in COUNTED_TABLES
            if t in found
        }
    finally:
        conn.close()


async def _retained(db: Path, retention_s: float) -> dict[str, dict[str, int]]:
    """Once retention has deleted every run (none is left in flight when this is called): each
    table's bytes and rows."""
    deadline = time.monotonic() + 20 * retention_s + 30  # a bound on a loaded machine, not a timing
    while (await asyncio.to_thread(table_rows, db))["runs"]:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"retention of {retention_s:g}s left runs stored for {20 * retention_s + 30:g}s"
            )
        await asyncio.sleep(retention_s / 10)
    return {
        "bytes": await asyncio.to_thread(table_bytes, db),
        "rows": await asyncio.to_thread(table_rows, db),
    }


async def steady(
    world: h.World, workflow: str, steady_s: float, retention_s: float, in_flight: int
) -> dict[str, Any]:
    """Drive chains for three retention periods, then for ``steady_s``, and say what the store
    kept for good of the runs in between (after each, once retention deleted every run)."""
    db = world.coordinator.db
    settle_s = 3 * retention_s

    async def drive_for(seconds: float, samples: list[tuple[float, int, int]] | None) -> int:
        finished = 0
        stop = asyncio.Event()

        async def load() -> None:
            nonlocal finished
            while not stop.is_set():
                await _drive(world, workflow, in_flight, in_flight)
                finished += in_flight

        driving = asyncio.create_task(load())
        t0 = time.monotonic()
        try:
            while (elapsed := time.monotonic() - t0) < seconds:
                if samples is not None:
                    sizes = await asyncio.to_thread(table_bytes, db)
                    samples.append((round(elapsed, 1), sum(sizes.values()), db_file_bytes(db)))
                await asyncio.sleep(min(2.0, seconds))
        finally:
            stop.set()
            await driving
        return finished

    await drive_for(settle_s, None)
    start = await _retained(db, retention_s)
    samples: list[tuple[float, int, int]] = []  # (s, tables' bytes, file bytes) under load
    runs = await drive_for(steady_s, samples)
    end = await _retained(db, retention_s)
    total_start, total_end = sum(start["bytes"].values()), sum(end["bytes"].values())
    growth = total_end / total_start if total_start else None
    tables = sorted(set(start["bytes"]) | set(end["bytes"]))
    return {
        "seconds": steady_s,
        "retention_s": retention_s,
        "settle_s": settle_s,
        "runs_finished_in_window": runs,
        "per_table": {
            t: {
                "bytes_start": start["bytes"].get(t, 0),
                "bytes_end": end["bytes"].get(t, 0),
                "rows_start": start["rows"].get(t),
                "rows_end": end["rows"].get(t),
            }
            for t in tables
            if t in COUNTED_TABLES or start["bytes"].get(t) != end["bytes"].get(t)
        },
        "total_bytes_start": total_start,
        "total_bytes_end": total_end,
        "growth_ratio": round(growth, 3) if growth is not None else None,
        "kept_bytes_per_run": round((total_end - total_start) / runs, 1) if runs else None,
        "under_load": {
            "tables_mb": [
                round(min(b for _, b, _ in samples) / 2**20, 2),
                round(max(b for _, b, _ in samples) / 2**20, 2),
            ]
            if samples
            else None,
            "file_mb": [round(samples[0][2] / 2**20, 2), round(samples[-1][2] / 2**20, 2)]
            if samples
            else None,
            "samples": samples,
        },
        "flat": growth is not None and growth <= 1 + FLAT_TOLERANCE,
        "flat_tolerance": FLAT_TOLERANCE,
    }


async def bench(
    levels: list[int],
    seconds: float = 30.0,
    warmup: float = 5.0,
    agents: int = 4,
    concurrency: int = 8,
    waiting_runs: int = 10_000,
    size_runs: int = 500,
    steady_s: float = 60.0,
    retention_s: float = 5.0,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "what": "throughput of bench_throughput's chain with N finished runs stored (cloned by SQL from a real run), "
        "and coordinator RSS with runs waiting on a slow step",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "settings": {
            "levels": levels,
            "seconds": seconds,
            "warmup_s": warmup,
            "agents": agents,
            "agent_concurrency": concurrency,
        },
    }
    if size_runs:
        h.log(f"scale: bytes per run ({size_runs} runs), then {steady_s:g}s of steady load with retention")
        result["size"] = await size(size_runs, steady_s, retention_s)
    result["history"] = await history(levels, seconds, warmup, agents, concurrency) if levels else []
    if waiting_runs:
        h.log(f"scale: {waiting_runs} runs waiting on a slow step")
        result["waiting"] = await waiting(waiting_runs)
    return result


def format_result(result: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [
        (
            "stored runs",
            "steps/s",
            "ratio",
            "CPU ms/step",
            "ratio",
            "startup s",
            "ListRuns ms",
            "GetRun(old) ms",
            "RSS MB",
            "DB MB",
        )
    ]
    for r in result["history"]:
        rows.append(
            (
                f"{r['stored_runs']:,}",
                r["steps_per_s"],
                r.get("steps_per_s_ratio"),
                r["coordinator_cpu_ms_per_step"],
                r.get("cpu_per_step_ratio"),
                r["startup_s"],
                r["list_runs_p50_ms"],
                r["get_old_run_p50_ms"],
                r["coordinator_rss_mb"],
                r["db_mb"],
            )
        )
    text = h.table(rows) if result["history"] else ""
    z = result.get("size")
    if z:
        per, target = z["bytes_per_run"], z["target_bytes"]
        text += (
            f"\nbytes per finished three-step run: {per['without_spans']} without spans (target <= {target['without_spans']}),"
            f" {per['spans']} of spans (target <= {target['spans']}): {'met' if z['met'] else 'NOT met'}"
            f"\n{format_steady(z['steady'])}"
        )
    w = result.get("waiting")
    if w:
        text += (
            f"\n{w['waiting_runs']:,} runs waiting on a slow step: RSS {w['rss_before_mb']} → {w['rss_after_mb']} MB"
            f" ({w['kb_per_waiting_run']} KB per waiting run); started at {w['start_runs_per_s']} runs/s;"
            f" chain p50 {w['chain_p50_ms_before']} ms before, {w['chain_p50_ms_while_waiting']} ms while they wait"
        )
    return text


def format_steady(steady: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [("table", "KB start", "KB end", "rows start", "rows end")]
    for table, t in steady["per_table"].items():
        rows.append(
            (
                table,
                round(t["bytes_start"] / 1024),
                round(t["bytes_end"] / 1024),
                t["rows_start"],
                t["rows_end"],
            )
        )
    load = steady["under_load"]
    return (
        f"steady load, retention {steady['retention_s']:g}s: {steady['runs_finished_in_window']:,} runs in"
        f" {steady['seconds']:g}s; once retention deleted them, the tables went"
        f" {steady['total_bytes_start'] / 2**20:.3f} -> {steady['total_bytes_end'] / 2**20:.3f} MB"
        f" (x{steady['growth_ratio']}, {steady['kept_bytes_per_run']} bytes kept per run):"
        f" {'flat' if steady['flat'] else 'GROWING'} (within {steady['flat_tolerance']:.0%});"
        f" under load the tables moved within {load['tables_mb']} MB, the file {load['file_mb']} MB\n"
        + h.table(rows)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1000,10000,100000", help="stored finished runs (cumulative)")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="throughput window per level (default 30)"
    )
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--waiting", type=int, default=10_000, help="runs waiting on a slow step (0: skip)")
    parser.add_argument(
        "--size-runs", type=int, default=500, help="runs measured for bytes per run (0: skip)"
    )
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of steady load with retention")
    parser.add_argument("--retention", type=float, default=5.0, help="retention (s) during the steady load")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    result = asyncio.run(
        bench(
            levels,
            args.seconds,
            args.warmup,
            args.agents,
            args.concurrency,
            args.waiting,
            args.size_runs,
            args.steady,
            args.retention,
        )
    )
    print(format_result(result))
    print(f"written: {h.write_result('scale', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
