"""Shared pieces of the Accord benchmarks: a real coordinator subprocess, real agent subprocesses,
teams/contracts/workflows, run drivers, process CPU/RSS and statistics.

Everything runs as a user would run it: ``accord coordinator start`` (durable SQLite default, WAL;
or ``--store`` on a throwaway PostgreSQL database, ``PgDatabase``) and ``accord agent start``
processes talking gRPC over loopback. The benchmark process itself is the client (a StartRun
that waits for the run's end; WatchRun after it for a run still going). Only the UI is switched
off (``--ui off``), so several coordinators can run side by side; it is not on any run's path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.client import AsyncClient, merge_watched
from team_agent.testing import AgentProcess, accord_executable

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
TERMINAL = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Unavailable(RuntimeError):
    """Something a benchmark needs is not there (e.g. no PostgreSQL to run on): said in one line,
    without a traceback, and the other benchmarks go on."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes: CPU and memory


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (psutil when installed, else /proc/<pid>/stat)."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")": state is field 3, utime 14 and stime 15 (1-based over the whole line)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1m": loadavg(),
    }


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "min_ms": round(min(ms), 3) if ms else float("nan"),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
    }


def table(rows: Sequence[Sequence[Any]]) -> str:
    """Plain text table; the first row is the header."""
    text = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    lines = []
    for k, row in enumerate(text):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- coordinator


class Coordinator:
    """``accord coordinator start --listen 127.0.0.1:0 --ui off`` with its own ACCORD_HOME."""

    def __init__(self, home: Path, *extra_args: str, source: Path | None = None) -> None:
        """``source``: run the coordinator of another source tree (e.g. an older commit, for an
        A/B comparison in one run) with this venv's packages."""
        self.home = home
        self.extra_args = list(extra_args)
        self.source = source
        self.address = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "coordinator.log"
        self.started_s = 0.0  # how long until it listened

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def admin_token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    @property
    def db(self) -> Path:
        return self.home / "coordinator.db"

    def start(self) -> Coordinator:
        self.home.mkdir(parents=True, exist_ok=True)
        state = self.home / "coordinator.json"
        state.unlink(missing_ok=True)
        env = {**os.environ, "ACCORD_HOME": str(self.home)}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        t0 = time.monotonic()
        args = ["coordinator", "start", "--listen", "127.0.0.1:0", "--ui", "off", *self.extra_args]
        command = [accord_executable(), *args]
        prelude = os.environ.get("ACCORD_BENCH_PRELUDE")
        if prelude:  # profiling aid: a Python file run inside the coordinator before it starts
            code = (
                "import runpy, sys; runpy.run_path(sys.argv[1]); sys.argv = ['accord', *sys.argv[2:]];"
                " from coordinator.cli import main; main()"
            )
            command = [sys.executable, "-c", code, prelude, *args]
        elif self.source is not None:
            code = (
                "import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['accord', *sys.argv[2:]];"
                " from coordinator.cli import main; main()"
            )
            command = [sys.executable, "-c", code, str(self.source), *args]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                info = json.loads(state.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.process.pid and info.get("grpc"):
                self.address = info["grpc"]
                self.started_s = time.monotonic() - t0
                return self
            time.sleep(0.02)
        raise RuntimeError(f"coordinator did not start:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill9(self) -> None:
        """``kill -9`` the process (its group: it was started in a session of its own), as a
        crash would; returns once it is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def client(self, token: str | None = None) -> AsyncClient:
        return AsyncClient(
            self.address,
            self.admin_token if token is None else token,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)


# ---------------------------------------------------------------- teams, contracts, workflows


def contract_yaml(name: str, *, start_to_close: str = "2h", heartbeat: str = "") -> str:
    document: dict[str, Any] = {
        "contract": name,
        "version": "1.0.0",
        "description": "benchmark step: returns its input",
        "input": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "output": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "timeouts": {"start_to_close": start_to_close, **({"heartbeat": heartbeat} if heartbeat else {})},
        "retry": {"max_attempts": 1},
    }
    return yaml.safe_dump(document, sort_keys=False)


def chain_workflow_yaml(name: str, contracts: Sequence[str]) -> str:
    """``contracts[0]`` reads the run input, each next step the previous step's output."""
    steps: dict[str, Any] = {}
    previous = ""
    for index, contract in enumerate(contracts):
        step = f"s{index + 1}"
        steps[step] = {
            "contract": f"{contract}@^1",
            "input": "${input}" if not previous else "${steps." + previous + ".output}",
        }
        previous = step
    document = {
        "workflow": name,
        "description": f"{len(contracts)}-step chain for the benchmarks",
        "input": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "steps": steps,
        "output": "${steps." + previous + ".output}",
    }
    return yaml.safe_dump(document, sort_keys=False)


async def create_team(coordinator: Coordinator, name: str) -> str:
    async with coordinator.client() as admin:
        answer = await admin.coordinator.CreateTeam(pb.CreateTeamRequest(name=name))
    return str(answer.token)


async def register(coordinator: Coordinator, token: str, source: str, kind: str) -> None:
    async with coordinator.client(token) as client:
        if kind == "contract":
            await client.coordinator.RegisterContract(
                pb.RegisterContractRequest(source_text=source, source_name="contract.yaml")
            )
        else:
            await client.coordinator.RegisterWorkflow(
                pb.RegisterWorkflowRequest(source_text=source, source_name="workflow.yaml")
            )


def agent_config(
    team: str,
    address: str | Sequence[str],
    contracts: Iterable[str],
    *,
    concurrency: int,
    callable_: str,
    protocol: str = "",
) -> str:
    """``address``: one coordinator, or the list of replicas the agent tries in order.
    ``protocol``: the agent API ("v1", "v2"; "": the agent's default)."""
    document: dict[str, Any] = {
        "team": team,
        "coordinator": address if isinstance(address, str) else list(address),
        "token": "${secret:ACCORD_TOKEN}",
        "concurrency": concurrency,
        "secrets": {"provider": "env"},
        "implements": {
            f"{c}@1": {"engine": "python", "with": {"callable": callable_, "path": [str(REPO)]}}
            for c in contracts
        },
    }
    if protocol:
        document["protocol"] = protocol
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class Agents:
    """Real ``accord agent start`` processes (default log level, trace export on: the defaults)."""

    workdir: Path
    processes: list[AgentProcess] = field(default_factory=list)
    # Another source tree to run the agents of (an A/B against an older commit); None: this one.
    source: Path | None = None

    def start(
        self,
        team: str,
        token: str,
        address: str | Sequence[str],
        contracts: Sequence[str],
        *,
        concurrency: int = 8,
        callable_: str = "benchmarks:echo",
        log_level: str = "info",
        protocol: str = "",
    ) -> AgentProcess:
        index = len(self.processes)
        config = self.workdir / f"agent-{team}-{index}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            agent_config(
                team, address, contracts, concurrency=concurrency, callable_=callable_, protocol=protocol
            )
        )
        agent = AgentProcess(
            config,
            workdir=self.workdir,
            env={
                "ACCORD_TOKEN": token,
                "PYTHONPATH": os.pathsep.join(str(p) for p in (self.source, REPO) if p is not None),
            },
            agent_id=f"bench-{team}-{index}",
            grace=2.0,
            reload_interval=5.0,
            log_level=log_level,
        )
        agent.start()
        self.processes.append(agent)
        return agent

    async def wait_registered(self, within: float = 60.0) -> None:
        for agent in self.processes:
            await agent.wait_for_log("registered", timeout=within)

    def pids(self) -> list[int]:
        return [a.process.pid for a in self.processes if a.process is not None]

    def stop(self) -> None:
        for agent in self.processes:
            if agent.running:
                assert agent.process is not None
                agent.process.send_signal(signal.SIGTERM)
        for agent in self.processes:
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
        self.processes.clear()


# ---------------------------------------------------------------- runs


def run_input(n: int, payload_kb: int = 0) -> dict[str, Any]:
    """A benchmark run's input: ``{"n": n}``, plus, with ``payload_kb``, order lines making the JSON
    about that many KiB (the contracts declare only ``n``; the rest passes through every step, as
    a team's payload would)."""
    if payload_kb <= 0:
        return {"n": n}
    line = {
        "sku": "sku-000000",
        "qty": 1,
        "price": 12.5,
        "discount": None,
        "note": "standard delivery, leave at the door",
    }
    size = len(json.dumps({"id": 0, **line}, separators=(",", ":"))) + 1
    lines = [
        {"id": k, **line, "sku": f"sku-{k:06d}", "qty": k % 7 + 1, "price": round(k * 0.37, 2)}
        for k in range(max(1, payload_kb * 1024 // size))
    ]
    return {"n": n, "lines": lines}


def add_payload_kb(parser: argparse.ArgumentParser, more_help: str = "") -> None:
    """``--payload-kb N`` (0-900, default 0) for ``run_input``: refused out of range by argparse,
    naming the option."""

    def kib(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of KiB") from None
        if not 0 <= value <= 900:
            raise argparse.ArgumentTypeError(
                "from 0 to 900 (the coordinator's default --max-payload is 1 MiB)"
            )
        return value

    parser.add_argument(
        "--payload-kb",
        type=kib,
        default=0,
        help="each run's input carries about this many KiB of JSON through every step (default 0: {n})"
        + more_help,
    )


async def start_run(client: AsyncClient, workflow: str, value: Any) -> str:
    answer = await client.coordinator.StartRun(
        pb.StartRunRequest(workflow=workflow, input_json=json.dumps(value, separators=(",", ":")))
    )
    return str(answer.run.run_id)


async def wait_run(client: AsyncClient, run_id: str) -> Any:
    """Follow WatchRun (changes only, as ``accord run --wait`` does) until the run is terminal;
    the run as the last message left it."""
    last = pb.Run()
    request = pb.WatchRunRequest(run_id=run_id, changes_only=True)
    async for answer in client.coordinator.stream("WatchRun", request):
        last = merge_watched(last, answer)
        if last.status in TERMINAL:
            return last
    raise RuntimeError(f"WatchRun of {run_id} ended before the run finished: {last}")


# StartRun's wait: a run that ends within it takes one call; a longer one is then followed with
# WatchRun, as ``accord run --wait`` does. A coordinator from before wait_ms answers at once.
START_WAIT_MS = 10_000


async def run_to_end(client: AsyncClient, workflow: str, value: Any) -> Any:
    answer = await client.coordinator.StartRun(
        pb.StartRunRequest(
            workflow=workflow, input_json=json.dumps(value, separators=(",", ":")), wait_ms=START_WAIT_MS
        )
    )
    if answer.run.status in TERMINAL:
        return answer.run
    return await wait_run(client, answer.run.run_id)


@dataclass
class World:
    """A coordinator, its admin, teams and agents under one temporary directory."""

    root: Path
    coordinator: Coordinator
    agents: Agents
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, root: Path | None = None, *, source: Path | None = None) -> World:
        base = root or Path(tempfile.mkdtemp(prefix=f"accord-bench-{name}-"))
        coordinator = Coordinator(base / "home", source=source).start()
        return cls(base, coordinator, Agents(base / "agents"))

    async def team(self, name: str) -> str:
        if name not in self.tokens:
            self.tokens[name] = await create_team(self.coordinator, name)
        return self.tokens[name]

    async def contract(self, team: str, name: str, **options: Any) -> str:
        full = f"{team}/{name}"
        await register(self.coordinator, await self.team(team), contract_yaml(full, **options), "contract")
        return full

    async def chain(self, owner: str, name: str, contracts: Sequence[str]) -> str:
        full = f"{owner}/{name}"
        await register(
            self.coordinator, await self.team(owner), chain_workflow_yaml(full, contracts), "workflow"
        )
        return full

    def close(self) -> None:
        """Stop everything and delete the directory (keep it with ACCORD_BENCH_KEEP=1)."""
        self.agents.stop()
        self.coordinator.stop()
        if not os.environ.get("ACCORD_BENCH_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- PostgreSQL


def postgres_maintenance_url() -> str:
    """Where to create and drop the benchmarks' databases: ``ACCORD_BENCH_POSTGRES``, else the
    tests' ``ACCORD_TEST_POSTGRES``, else the local server (user postgres, trust auth)."""
    return os.environ.get("ACCORD_BENCH_POSTGRES") or os.environ.get(
        "ACCORD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@dataclass
class PgDatabase:
    """A throwaway database (``accord_bench_<random>``) on the PostgreSQL server of
    ``postgres_maintenance_url()``: ``create``, ``url`` for ``--store``, ``drop`` (in a
    ``finally``). Only databases made here are ever dropped."""

    name: str
    maintenance_url: str

    @classmethod
    def create(cls, prefix: str = "accord_bench") -> PgDatabase:
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            raise Unavailable(
                "psycopg is not installed: `make install` installs it (the postgres extra)"
            ) from None
        maintenance = postgres_maintenance_url()
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Unavailable(
                f"cannot create a database on PostgreSQL at {_safe_url(maintenance)}: {first}; start it, "
                "or set ACCORD_BENCH_POSTGRES to the URL of a maintenance database (e.g. .../postgres)"
            ) from None
        return cls(name, maintenance)

    @property
    def url(self) -> str:
        address, mark, query = self.maintenance_url.partition("?")  # keep sslmode=... and the like
        base, _, _ = address.rpartition("/")
        return f"{base}/{self.name}{mark}{query}"

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def backend_pids(self) -> list[int]:
        """The server processes serving this database's connections (PostgreSQL forks one per
        connection): the database's share of the work, beside the coordinators'."""
        import psycopg

        with psycopg.connect(self.maintenance_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def drop(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.maintenance_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


def _safe_url(url: str) -> str:
    """``url`` without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"


def cpu_seconds_of(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds of each of ``pids`` still there (a process gone meanwhile is left out)."""
    seen: dict[int, float] = {}
    for pid in pids:
        try:
            seen[pid] = cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue
        except Exception as exc:  # psutil.NoSuchProcess / AccessDenied, without importing psutil
            if type(exc).__name__ in {"NoSuchProcess", "AccessDenied", "ZombieProcess"}:
                continue
            raise
    return seen


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"
