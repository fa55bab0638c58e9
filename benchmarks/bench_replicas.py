"""PostgreSQL with one and two coordinators beside SQLite, in one run: coordinator CPU per step,
steps/s, and failover time (``kill -9`` of a replica → the first step completed through another).

**Throughput, three ways** (each on a fresh store, in one run, so the ratios compare like with
like on this shared machine):

- ``sqlite``: one coordinator on its default, the embedded SQLite file;
- ``pg1``: one coordinator, ``--store`` a fresh PostgreSQL database;
- ``pg2``: two coordinators on one fresh PostgreSQL database, the agents and the client's runs
  spread over both: agent and client *i* are given the address list ``a,b`` when *i* is even,
  ``b,a`` when it is odd (so each talks to its first and fails over to the other).

The workload is ``bench_throughput``'s: one team, three no-op contracts, the chain
``s1 → s2 → s3``, ``--agents`` agent processes serving all three with ``--concurrency`` slots each
(the built-in ``python`` engine calling ``benchmarks:echo``; the agents' long-poll settings are
the product's defaults), and the client keeping ``max(64, 2 x slots)`` runs in flight (StartRun,
then WatchRun until terminal, then the next). After a warm-up, over a window of ``--seconds``:

- steps/s: the steps the store shows finished (status succeeded, ``finished_ms`` in the window),
  counted from the database itself, so a client that learns of an end late does not move it;
- coordinator CPU per step: the CPU (user + system, /proc/<pid>/stat) of every coordinator process
  over the window, summed, divided by those steps; the ratio to SQLite's is the goal (≤ 1.5x);
- the database's CPU per step beside it (PostgreSQL forks a server process per connection; those
  of the benchmark's database are read from /proc: SQLite does that work inside the coordinator,
  so coordinator + database is the fair total for PostgreSQL);
- runs/s and run latency as the client saw them, and ``missed_wakeups``: a WatchRun silent for
  ``SILENCE_S`` seconds (``silent_watches``: under load a step may simply wait its turn that long)
  asks every coordinator for the run (GetRun); when one shows a change made more than
  ``SILENCE_S / 2`` earlier that the watch never sent, a transition made by one coordinator did
  not wake the watch on another. With one coordinator it stays 0; a terminal answer ends the
  client's wait, so a missed wake-up costs ``SILENCE_S``, not a hang.

``--rounds`` repeats the three (in alternating order); the ratios are taken within each round and
the median is reported.

**Failover** (``--failovers`` times, each on a fresh database): two coordinators A and B, the agents
and the client all given ``A,B``, runs flowing through A; then ``kill -9`` of A. Measured: from the
kill to the ``finished_ms`` of the first step the store shows finished after it (necessarily
through B), and, beside it, to the end of the first run the client started after the kill (all of
it through B), as the client saw it. Goal: under 5 s.

Every PostgreSQL database is made here (``accord_bench_<random>``, on ``ACCORD_BENCH_POSTGRES``,
default the local server) and dropped at the end of its measurement, whatever happens.

Run: ``python -m benchmarks.bench_replicas [--seconds 30] [--agents 2] [--rounds 1] [--failovers 3]``
→ benchmarks/results/replicas.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _harness as h
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import RemoteError
from coordinator.client import AsyncClient

KINDS = ("sqlite", "pg1", "pg2")
LABELS = {
    "sqlite": "SQLite, 1 coordinator",
    "pg1": "PostgreSQL, 1 coordinator",
    "pg2": "PostgreSQL, 2 coordinators",
}
TARGET_CPU_RATIO = 1.5
TARGET_FAILOVER_S = 5.0
STEPS = 3
TEAM = "rep"
SILENCE_S = 2.0  # a WatchRun silent this long: ask every coordinator for the run instead
_CLIENT_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


# ---------------------------------------------------------------- coordinators on one store


@dataclass
class Cluster:
    """One or several coordinators on one store, the benchmark team's agents, and its token."""

    root: Path
    coordinators: list[h.Coordinator]
    database: h.PgDatabase | None
    agents: h.Agents
    token: str = ""
    admin_token: str = ""
    contracts: list[str] = field(default_factory=list)
    workflow: str = ""

    @classmethod
    def start(cls, kind: str, root: Path, database: h.PgDatabase | None, replicas: int) -> Cluster:
        store = ["--store", database.url] if database is not None else []
        cluster = cls(root, [], database, h.Agents(root / "agents"))
        try:
            # One after the other: the first creates the schema and the admin token (in its home's
            # admin.token); the others find both in the database.
            for index in range(replicas):
                coordinator = h.Coordinator(root / f"home-{index}", *store)
                cluster.coordinators.append(coordinator)  # stopped by close() if it fails to start
                coordinator.start()
            cluster.admin_token = cluster.coordinators[0].admin_token
        except BaseException:
            cluster.close()
            raise
        h.log(f"replicas: {kind}: " + ", ".join(f"{c.address} (pid {c.pid})" for c in cluster.coordinators))
        return cluster

    def addresses(self, index: int) -> list[str]:
        """The address list of agent or client ``index``: every coordinator, starting at
        ``index`` modulo their number (``a,b`` for even, ``b,a`` for odd with two)."""
        everyone = [c.address for c in self.coordinators if c.process and c.process.poll() is None]
        shift = index % len(everyone)
        return everyone[shift:] + everyone[:shift]

    def client(self, addresses: Sequence[str], token: str | None = None) -> AsyncClient:
        return AsyncClient(",".join(addresses), token or self.token, options=_CLIENT_OPTIONS)

    async def setup(self) -> None:
        """The team, three contracts and the chain, registered through the first coordinator."""
        first = self.coordinators[0]
        async with self.client([first.address], self.admin_token) as admin:
            answer = await admin.coordinator.CreateTeam(pb.CreateTeamRequest(name=TEAM))
        self.token = str(answer.token)
        async with self.client([first.address]) as client:
            for i in range(1, STEPS + 1):
                name = f"{TEAM}/step{i}"
                await client.coordinator.RegisterContract(
                    pb.RegisterContractRequest(source_text=h.contract_yaml(name), source_name="contract.yaml")
                )
                self.contracts.append(name)
            self.workflow = f"{TEAM}/chain"
            await client.coordinator.RegisterWorkflow(
                pb.RegisterWorkflowRequest(
                    source_text=h.chain_workflow_yaml(self.workflow, self.contracts),
                    source_name="workflow.yaml",
                )
            )

    def start_agents(self, count: int, concurrency: int, *, spread: bool) -> None:
        for index in range(count):
            addresses = self.addresses(index if spread else 0)
            self.agents.start(TEAM, self.token, addresses, self.contracts, concurrency=concurrency)

    def coordinator_cpu(self) -> dict[int, float]:
        return h.cpu_seconds_of(c.pid for c in self.coordinators)

    def database_cpu(self) -> dict[int, float]:
        return {} if self.database is None else h.cpu_seconds_of(self.database.backend_pids())

    def steps_finished(self, after_ms: int, until_ms: int) -> int:
        """Steps the store shows succeeded with ``after_ms < finished_ms <= until_ms``."""
        if self.database is None:
            db = self.coordinators[0].db
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM steps WHERE json_extract(data_json, '$.status') = 'succeeded'"
                    " AND json_extract(data_json, '$.finished_ms') > ?"
                    " AND json_extract(data_json, '$.finished_ms') <= ?",
                    (after_ms, until_ms),
                ).fetchone()
            return int(row[0])
        with self.database.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM steps WHERE data_json::jsonb->>'status' = 'succeeded'"
                " AND (data_json::jsonb->>'finished_ms')::bigint > %s"
                " AND (data_json::jsonb->>'finished_ms')::bigint <= %s",
                (after_ms, until_ms),
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self.agents.stop()
        for coordinator in self.coordinators:
            coordinator.stop()


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two readings: processes seen at both, plus the whole CPU of those that
    appeared meanwhile (a process that ended meanwhile is lost: it cannot be read any more)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# ---------------------------------------------------------------- the client's runs


@dataclass
class Flow:
    """Runs kept in flight by ``in_flight`` workers, each on its own client's address list."""

    cluster: Cluster
    spread: bool
    done_at: list[float] = field(default_factory=list)  # time.monotonic() of each finished run
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    silent_watches: int = 0
    missed_wakeups: int = 0
    errors: int = 0
    last_error: str = ""
    _clients: list[AsyncClient] = field(default_factory=list)
    _single: list[AsyncClient] = field(default_factory=list)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, in_flight: int) -> None:
        lists = len(self.cluster.coordinators) if self.spread else 1
        self._clients = [self.cluster.client(self.cluster.addresses(i)) for i in range(lists)]
        self._single = [self.cluster.client([c.address]) for c in self.cluster.coordinators]
        self._workers = [
            asyncio.create_task(self._worker(k, self._clients[k % lists])) for k in range(in_flight)
        ]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for client in self._clients + self._single:
            with contextlib.suppress(Exception):
                await client.close()

    async def _worker(self, k: int, client: AsyncClient) -> None:
        i = 0
        while True:
            t0 = time.monotonic()
            try:
                run_id = await h.start_run(client, self.cluster.workflow, {"n": k * 1_000_000 + i})
                run = await self._wait(client, run_id)
            except RemoteError as exc:
                # A coordinator killed under the call (the failover measurement): the client has
                # moved on to the next address; start another run there.
                self.errors += 1
                self.last_error = str(exc)
                await asyncio.sleep(0.05)
                continue
            t1 = time.monotonic()
            i += 1
            if run.status != pb.RUN_STATUS_SUCCEEDED:
                self.failed += 1
                continue
            self.done_at.append(t1)
            self.latencies.append(t1 - t0)

    async def _wait(self, client: AsyncClient, run_id: str) -> Any:
        """WatchRun until terminal. A watch silent for SILENCE_S asks every coordinator for the
        run (GetRun): a terminal answer ends the wait; an answer with a change made more than
        SILENCE_S / 2 ago that the watch never sent is a missed wake-up (a transition made by
        another coordinator did not wake this one's watch). Then it watches again; a broken
        watch (its coordinator gone) watches through the next address."""
        last: Any = None
        while True:
            try:
                async with asyncio.timeout(SILENCE_S) as silence:
                    async for answer in client.coordinator.stream(
                        "WatchRun", pb.WatchRunRequest(run_id=run_id)
                    ):
                        if answer.run.status in h.TERMINAL:
                            return answer.run
                        last = answer.run
                        silence.reschedule(asyncio.get_running_loop().time() + SILENCE_S)
            except TimeoutError:
                self.silent_watches += 1
            except RemoteError as exc:
                self.errors += 1
                self.last_error = str(exc)
                await asyncio.sleep(0.05)
            # Changes the watch should have sent by now (not one that landed as it timed out).
            overdue_ms = time.time() * 1000 - SILENCE_S * 500
            seen_ms = _latest_change_ms(last) if last is not None else None
            missed = False
            for single in self._single:
                try:
                    answer = await single.coordinator.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10)
                except RemoteError:
                    continue
                changed_ms = _latest_change_ms(answer.run)
                if seen_ms is not None and seen_ms < changed_ms < overdue_ms:
                    missed = True
                if answer.run.status in h.TERMINAL:
                    break
            else:
                answer = None
            self.missed_wakeups += missed
            if answer is not None:
                return answer.run


def _latest_change_ms(run: Any) -> int:
    """When the run last changed, as far as its timestamps tell (a step or attempt scheduled,
    started or finished, the run finished)."""
    latest = run.finished_unix_ms
    for step in run.steps:
        latest = max(latest, step.started_unix_ms, step.finished_unix_ms)
        for attempt in step.attempts:
            latest = max(latest, attempt.scheduled_unix_ms, attempt.started_unix_ms, attempt.finished_unix_ms)
    return int(latest)


# ---------------------------------------------------------------- throughput


async def measure(
    kind: str, *, agents: int, concurrency: int, seconds: float, warmup: float, in_flight: int | None
) -> dict[str, Any]:
    """One configuration on a fresh store: steps/s and CPU per step over the window."""
    replicas = 2 if kind == "pg2" else 1
    root = Path(tempfile.mkdtemp(prefix=f"accord-bench-replicas-{kind}-"))
    database = None if kind == "sqlite" else h.PgDatabase.create()
    try:
        cluster = Cluster.start(kind, root, database, replicas)
        try:
            await cluster.setup()
            cluster.start_agents(agents, concurrency, spread=True)
            await cluster.agents.wait_registered()
            flying = in_flight or max(64, 2 * agents * concurrency)
            h.log(
                f"replicas: {kind}: {agents} agent(s) x {concurrency}, {flying} runs in flight, "
                f"{seconds:.0f} s window"
            )
            flow = Flow(cluster, spread=True)
            flow.start(flying)
            try:
                await asyncio.sleep(warmup)
                silent0, missed0 = flow.silent_watches, flow.missed_wakeups
                first = len(flow.done_at)
                wall0, mono0 = time.time(), time.monotonic()
                database0 = await asyncio.to_thread(cluster.database_cpu)
                coordinators0 = cluster.coordinator_cpu()
                agents0 = sum(h.cpu_seconds_of(cluster.agents.pids()).values())
                await asyncio.sleep(seconds)
                coordinators1 = cluster.coordinator_cpu()
                database1 = await asyncio.to_thread(cluster.database_cpu)
                agents1 = sum(h.cpu_seconds_of(cluster.agents.pids()).values())
                wall1, mono1 = time.time(), time.monotonic()
                runs = [t for t in flow.done_at[first:] if t <= mono1]
                latencies = flow.latencies[first : first + len(runs)]
                silent, missed = flow.silent_watches - silent0, flow.missed_wakeups - missed0
            finally:
                await flow.stop()
            await asyncio.sleep(0.5)  # let commits of steps finished just before the window's end land
            steps = cluster.steps_finished(int(wall0 * 1000), int(wall1 * 1000))
            rss = [round(h.rss_bytes(c.pid) / 2**20, 1) for c in cluster.coordinators]
        finally:
            cluster.close()
    finally:
        if database is not None:
            database.drop()
        if not os.environ.get("ACCORD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    elapsed = mono1 - mono0
    coordinator_cpu = _spent(coordinators0, coordinators1)
    database_cpu = _spent(database0, database1) if database is not None else None
    result: dict[str, Any] = {
        "kind": kind,
        "coordinators": replicas,
        "window_s": round(elapsed, 2),
        "steps": steps,
        "steps_per_s": round(steps / elapsed, 1),
        "runs_finished": len(runs),
        "runs_per_s": round(len(runs) / elapsed, 1),
        "failed_runs": flow.failed,
        "client_errors": flow.errors,
        "last_client_error": flow.last_error or None,
        "silent_watches": silent,
        "missed_wakeups": missed,
        "coordinator_cpu_pct": round(100 * coordinator_cpu / elapsed, 1),
        "coordinator_cpu_ms_per_step": round(1000 * coordinator_cpu / steps, 3) if steps else None,
        "coordinator_cpu_s_each": [
            round(coordinators1.get(pid, 0.0) - coordinators0.get(pid, 0.0), 2) for pid in coordinators0
        ],
        "database_cpu_ms_per_step": (
            round(1000 * database_cpu / steps, 3) if steps and database_cpu is not None else None
        ),
        "coordinator_and_database_cpu_ms_per_step": (
            round(1000 * (coordinator_cpu + (database_cpu or 0.0)) / steps, 3) if steps else None
        ),
        "agents_cpu_pct": round(100 * (agents1 - agents0) / elapsed, 1),
        "coordinator_rss_mb": rss,
        "run_latency": h.summary_ms(latencies) if latencies else None,
        "agents": agents,
        "agent_concurrency": concurrency,
        "in_flight": flying,
        "loadavg_1m": h.loadavg(),
    }
    h.log(
        f"replicas: {kind}: {result['steps_per_s']} steps/s, coordinator CPU "
        f"{result['coordinator_cpu_ms_per_step']} ms/step, database {result['database_cpu_ms_per_step']} "
        f"ms/step, {missed} missed wake-up(s) in {silent} silent watch(es)"
    )
    return result


# ---------------------------------------------------------------- failover


async def failover_once(
    *, agents: int, concurrency: int, in_flight: int, flowing_runs: int
) -> dict[str, Any]:
    """Two coordinators, everyone on ``A,B``, runs flowing through A; ``kill -9`` A; the time to
    the first step finished after the kill (through B, the only one left)."""
    root = Path(tempfile.mkdtemp(prefix="accord-bench-failover-"))
    database = h.PgDatabase.create()
    try:
        cluster = Cluster.start("failover", root, database, 2)
        try:
            await cluster.setup()
            cluster.start_agents(agents, concurrency, spread=False)
            await cluster.agents.wait_registered()
            flow = Flow(cluster, spread=False)
            flow.start(in_flight)
            try:
                deadline = time.monotonic() + 120
                while len(flow.done_at) < flowing_runs:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"failover: only {len(flow.done_at)} runs finished in 120 s before the kill"
                        )
                    await asyncio.sleep(0.05)
                victim = cluster.coordinators[0]
                before = len(flow.done_at)
                kill_wall, kill_mono = time.time(), time.monotonic()
                victim.kill9()
                kill_ms = int(kill_wall * 1000)
                first_ms = await _first_step_after(database, kill_ms, within=60.0)
                seen_s = time.monotonic() - kill_mono
                run_s = await _first_run_after(flow, kill_mono, within=30.0)
            finally:
                await flow.stop()
        finally:
            cluster.close()
    finally:
        database.drop()
        if not os.environ.get("ACCORD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    result = {
        "step_s": round(first_ms / 1000 - kill_wall, 3) if first_ms is not None else None,
        "step_seen_s": round(seen_s, 3) if first_ms is not None else None,
        "first_run_s": round(run_s, 3) if run_s is not None else None,
        "runs_before_kill": before,
        "client_errors_after_kill": flow.errors,
    }
    h.log(
        f"replicas: failover: first step through the other coordinator {result['step_s']} s after the "
        f"kill, first run started after the kill ended {result['first_run_s']} s after it"
    )
    return result


async def _first_step_after(database: h.PgDatabase, after_ms: int, *, within: float) -> int | None:
    """``finished_ms`` of the first step the store shows succeeded after ``after_ms`` (None when
    none within ``within`` seconds)."""
    import psycopg

    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(
                "SELECT min((data_json::jsonb->>'finished_ms')::bigint) FROM steps"
                " WHERE data_json::jsonb->>'status' = 'succeeded'"
                " AND (data_json::jsonb->>'finished_ms')::bigint > %s",
                (after_ms,),
            )
            row = await cursor.fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
            await asyncio.sleep(0.02)
    return None


async def _first_run_after(flow: Flow, after: float, *, within: float) -> float | None:
    """Seconds from ``after`` to the end of the first run started after it (every step of it
    through the coordinators left), as the client saw it; None when none within ``within``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        later = [end for end, took in zip(flow.done_at, flow.latencies, strict=True) if end - took > after]
        if later:
            return min(later) - after
        await asyncio.sleep(0.02)
    return None


# ---------------------------------------------------------------- the whole benchmark


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


async def bench(
    *,
    seconds: float = 30.0,
    warmup: float = 5.0,
    agents: int = 2,
    concurrency: int = 8,
    in_flight: int | None = None,
    rounds: int = 1,
    failovers: int = 3,
    failover_in_flight: int = 16,
) -> dict[str, Any]:
    # SIGTERM (a CI timeout, `kill`) cancels the benchmark like Ctrl-C does, so the processes are
    # stopped and the databases dropped on the way out.
    loop, this = asyncio.get_running_loop(), asyncio.current_task()
    assert this is not None
    loop.add_signal_handler(signal.SIGTERM, this.cancel)
    try:
        return await _bench(
            seconds=seconds,
            warmup=warmup,
            agents=agents,
            concurrency=concurrency,
            in_flight=in_flight,
            rounds=rounds,
            failovers=failovers,
            failover_in_flight=failover_in_flight,
        )
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _bench(
    *,
    seconds: float,
    warmup: float,
    agents: int,
    concurrency: int,
    in_flight: int | None,
    rounds: int,
    failovers: int,
    failover_in_flight: int,
) -> dict[str, Any]:
    h.PgDatabase.create().drop()  # no PostgreSQL: say so now, not after the SQLite measurement
    rounds_done: list[dict[str, dict[str, Any]]] = []
    for index in range(rounds):
        order = KINDS if index % 2 == 0 else tuple(reversed(KINDS))
        measured: dict[str, dict[str, Any]] = {}
        for kind in order:
            h.log(f"replicas: round {index + 1}/{rounds}: {LABELS[kind]}")
            measured[kind] = await measure(
                kind,
                agents=agents,
                concurrency=concurrency,
                seconds=seconds,
                warmup=warmup,
                in_flight=in_flight,
            )
        rounds_done.append(measured)

    def per_round(kind: str, measure_: str, base_measure: str | None = None) -> list[float | None]:
        return [_ratio(r[kind][measure_], r["sqlite"][base_measure or measure_]) for r in rounds_done]

    ratios = {
        f"{kind}_to_sqlite": {
            "coordinator_cpu_per_step": _median(per_round(kind, "coordinator_cpu_ms_per_step")),
            # PostgreSQL's own processes do what SQLite does inside the coordinator.
            "coordinator_and_database_cpu_per_step": _median(
                per_round(kind, "coordinator_and_database_cpu_ms_per_step")
            ),
            "steps_per_s": _median(per_round(kind, "steps_per_s")),
        }
        for kind in ("pg1", "pg2")
    }
    medians = {
        kind: {
            m: _median([r[kind][m] for r in rounds_done])
            for m in (
                "steps_per_s",
                "runs_per_s",
                "coordinator_cpu_ms_per_step",
                "database_cpu_ms_per_step",
                "coordinator_and_database_cpu_ms_per_step",
                "silent_watches",
                "missed_wakeups",
            )
        }
        for kind in KINDS
    }

    repeats = []
    for index in range(failovers):
        h.log(f"replicas: failover {index + 1}/{failovers}")
        repeats.append(
            await failover_once(
                agents=agents, concurrency=concurrency, in_flight=failover_in_flight, flowing_runs=30
            )
        )
    times = [r["step_s"] for r in repeats]
    measured_times = [t for t in times if t is not None]
    failover = {
        "repeats": repeats,
        "median_s": _median(times),
        "max_s": max(measured_times) if measured_times else None,
        "missing": len(times) - len(measured_times),
        "first_run_median_s": _median([r["first_run_s"] for r in repeats]),
        "target_s": TARGET_FAILOVER_S,
        "met": bool(measured_times)
        and len(measured_times) == len(times)
        and max(measured_times) < TARGET_FAILOVER_S,
    }
    cpu_ratio = ratios["pg1_to_sqlite"]["coordinator_cpu_per_step"]
    return {
        "what": "three-step chain in one team, no-op python engine, runs kept in flight; one "
        "coordinator on SQLite vs one on PostgreSQL vs two on one PostgreSQL database (agents and "
        "client spread a,b / b,a): steps finished per second (counted in the store) and the CPU of "
        "every coordinator process per step; failover = kill -9 of the coordinator the agents use "
        "→ the first step finished through the other",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "settings": {
            "seconds": seconds,
            "warmup_s": warmup,
            "agents": agents,
            "agent_concurrency": concurrency,
            "in_flight": in_flight or max(64, 2 * agents * concurrency),
            "rounds": rounds,
            "failovers": failovers,
            "failover_in_flight": failover_in_flight,
            "watch_silence_s": SILENCE_S,
        },
        "rounds": rounds_done,
        "median": medians,
        "ratios": ratios,
        "failover": failover,
        "targets": {"pg1_cpu_per_step_ratio": TARGET_CPU_RATIO, "failover_s": TARGET_FAILOVER_S},
        "met": {
            "cpu_per_step": cpu_ratio is not None and cpu_ratio <= TARGET_CPU_RATIO,
            "failover": failover["met"],
        },
    }


def format_result(result: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [
        (
            "store",
            "steps/s",
            "x SQLite",
            "coord CPU ms/step",
            "x SQLite",
            "+ database ms/step",
            "x SQLite",
            "missed wake-ups",
        )
    ]
    for kind in KINDS:
        m = result["median"][kind]
        r = result["ratios"].get(f"{kind}_to_sqlite", {})
        rows.append(
            (
                LABELS[kind],
                m["steps_per_s"],
                r.get("steps_per_s", 1.0) if kind != "sqlite" else 1.0,
                m["coordinator_cpu_ms_per_step"],
                r.get("coordinator_cpu_per_step") if kind != "sqlite" else 1.0,
                m["coordinator_and_database_cpu_ms_per_step"],
                r.get("coordinator_and_database_cpu_per_step") if kind != "sqlite" else 1.0,
                m["missed_wakeups"],
            )
        )
    f = result["failover"]
    met = result["met"]
    times = ", ".join("-" if r["step_s"] is None else f"{r['step_s']:.2f}" for r in f["repeats"])
    return (
        h.table(rows)
        + f"\nPostgreSQL (1 coordinator) CPU per step ≤ {TARGET_CPU_RATIO}x SQLite's: "
        + ("met" if met["cpu_per_step"] else "MISSED")
        + f"\nfailover (kill -9 → first step through the other coordinator): {times} s; median "
        f"{f['median_s']} s, max {f['max_s']} s; first run started after the kill, ended: median "
        f"{f['first_run_median_s']} s; < {TARGET_FAILOVER_S:.0f} s: "
        + ("met" if met["failover"] else "MISSED")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per store (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--agents", type=int, default=2, help="agent processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=8, help="task slots per agent (default 8)")
    parser.add_argument(
        "--in-flight", type=int, default=None, help="concurrent runs (default 2 x slots, ≥ 64)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the three stores (default 1)")
    parser.add_argument("--failovers", type=int, default=3, help="kill -9 repetitions (default 3)")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(
            bench(
                seconds=args.seconds,
                warmup=args.warmup,
                agents=args.agents,
                concurrency=args.concurrency,
                in_flight=args.in_flight,
                rounds=args.rounds,
                failovers=args.failovers,
            )
        )
    except h.Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: processes stopped, databases dropped", file=sys.stderr)
        return 130
    print(format_result(result))
    print(f"written: {h.write_result('replicas', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
