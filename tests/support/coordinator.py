"""Start the REAL coordinator as a subprocess (``accord coordinator start``) for tests.

proc = CoordinatorProcess.start(tmp_path / "home")
proc = CoordinatorProcess.start(tmp_path / "home", "--store", url)   # any extra flags
token = await proc.create_team("payments")
async with proc.client(token) as client: ...
await proc.register_contract(token, CONTRACT_YAML)
proc.kill9(); proc.restart()          # same DB, same port
proc.cli("runs", "list", token=token) # the CLI against it
proc.stop()

Over TLS: ``CoordinatorProcess.start(home, *certs.server_args(), client_env=certs.client_env())``
(``tests/support/tls.py``): ``client``, ``cli`` and ``env`` then dial it with those ACCORD_TLS_*.

Several at once (replicas on one database, each with its own home): ``spawn`` each, then
``wait_started`` each. ``admin_token`` is read from the home's admin.token, which only the
coordinator that created the token writes ("" where there is none).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.channels import TlsSettings
from coordinator.client import AsyncClient

ROOT = Path(__file__).resolve().parents[2]
ACCORD = str(Path(sys.executable).parent / "accord")
# The variables of `accord coordinator start`'s flags: a test's coordinator gets only the ones the
# test gives it, never whatever the shell that runs the tests has set.
FLAG_VARIABLES = (
    "ACCORD_LISTEN",
    "ACCORD_STORE",
    "ACCORD_DB",
    "ACCORD_STORE_POOL",
    "ACCORD_REPLICA_POLL",
    "ACCORD_STORE_RETRY",
    "ACCORD_CHECK_BUDGET",
    "ACCORD_LOG_LEVEL",
    "ACCORD_LOG_FORMAT",
    "ACCORD_UI",
    "ACCORD_SPAN_RETENTION",
    "ACCORD_TLS_CERT",
    "ACCORD_TLS_KEY",
    "ACCORD_TLS_CLIENT_CA",
    "ACCORD_INSECURE",
    "ACCORD_MAX_PAYLOAD",
    "ACCORD_MAX_INFLIGHT",
    "ACCORD_AUTONOMY_ROWS",
    "ACCORD_AGENT_STREAMS",
    "ACCORD_RETENTION",
    "ACCORD_AUDIT_RETENTION",
    "ACCORD_METRICS",
    "ACCORD_EVENTS",
    "ACCORD_EVENTS_STREAM",
    "ACCORD_EVENTS_RETENTION",
    "ACCORD_EVENTS_CREDS",
)


def coordinator_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a test's coordinator process: this one's, with ``ACCORD_HOME=home``,
    without the flags' variables or a token, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in FLAG_VARIABLES and k != "ACCORD_TOKEN"}
    return {**env, "ACCORD_HOME": str(home), **extra}


@dataclass
class CoordinatorProcess:
    home: Path
    listen: str = "127.0.0.1:0"
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    address: str = ""
    admin_token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # The ACCORD_TLS_* variables of this coordinator's clients in the test (``client``, ``cli``).
    client_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        home: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        client_env: dict[str, str] | None = None,
    ) -> CoordinatorProcess:
        instance = cls.spawn(home, *extra_args, env=env, client_env=client_env)
        instance.wait_started()
        return instance

    @classmethod
    def spawn(
        cls,
        home: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        client_env: dict[str, str] | None = None,
    ) -> CoordinatorProcess:
        """Start the process without waiting for it to serve (``wait_started``)."""
        instance = cls(
            home=home,
            extra_args=list(extra_args),
            extra_env=dict(env or {}),
            client_env=dict(client_env or {}),
        )
        instance._spawn()
        return instance

    @property
    def db(self) -> Path:
        return self.home / "coordinator.db"

    def env(self, token: str | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "ACCORD_HOME": str(self.home),
            "ACCORD_COORDINATOR": self.address,
            **self.client_env,
        }
        env.pop("ACCORD_TOKEN", None)
        if token is not None:
            env["ACCORD_TOKEN"] = token
        return env

    def _launch(self) -> None:
        self._spawn()
        self.wait_started()

    def _spawn(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "coordinator.json").unlink(missing_ok=True)
        # The file exists before log_path names it: log() may be called from another thread.
        log_path = self.home / f"coordinator-{int(time.time() * 1000)}.log"
        log = open(log_path, "wb")
        self.log_path = log_path
        env = coordinator_env(self.home, **self.extra_env)
        self.proc = subprocess.Popen(
            # The tracing UI stays off unless a test asks for it: parallel coordinators would
            # otherwise compete for its default port.
            # No metrics unless a test asks (--metrics 127.0.0.1:0 among its extra args wins):
            # parallel tests' coordinators would all want the default port.
            [
                ACCORD,
                "coordinator",
                "start",
                "--listen",
                self.listen,
                "--ui",
                "off",
                "--metrics",
                "off",
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_started(self) -> None:
        """Wait until the process serves (it wrote its address to coordinator.json)."""
        assert self.proc is not None
        state = self.home / "coordinator.json"
        deadline = time.monotonic() + 60  # an upper bound: a loaded machine may need it
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coordinator exited with {self.proc.returncode}:\n{self.log()}")
            try:
                data = json.loads(state.read_text())
                if data.get("pid") == self.proc.pid:
                    self.address = data["grpc"]
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"coordinator did not start in time:\n{self.log()}")
        self.listen = self.address  # a restart reuses the port
        token_file = self.home / "admin.token"
        if token_file.exists():
            self.admin_token = token_file.read_text().strip()

    def log(self) -> str:
        # One read of log_path: a restart in another thread (a test's to_thread) may replace it.
        path = self.log_path
        if path is None:
            return ""
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill9(self) -> None:
        """kill -9 the whole process group, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.kill9()
        self._launch()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    # ---------- helpers ----------

    def client(self, token: str | None = None) -> AsyncClient:
        """An AsyncClient with ``token`` (default: the admin token). Use ``async with``."""
        tls = TlsSettings.from_env(self.client_env) if self.client_env else None
        return AsyncClient(self.address, self.admin_token if token is None else token, tls=tls)

    async def create_team(self, name: str) -> str:
        async with self.client() as client:
            response = await client.coordinator.CreateTeam(pb.CreateTeamRequest(name=name))
        return str(response.token)

    async def register_contract(self, token: str, text: str, *, dry_run: bool = False) -> Any:
        async with self.client(token) as client:
            return await client.coordinator.RegisterContract(
                pb.RegisterContractRequest(
                    source_text=textwrap.dedent(text), source_name="contract.yaml", dry_run=dry_run
                )
            )

    async def register_workflow(self, token: str, text: str, *, dry_run: bool = False) -> Any:
        async with self.client(token) as client:
            return await client.coordinator.RegisterWorkflow(
                pb.RegisterWorkflowRequest(
                    source_text=textwrap.dedent(text), source_name="workflow.yaml", dry_run=dry_run
                )
            )

    async def acli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """``cli`` off the event loop, so in-process test agents keep serving meanwhile."""
        return await asyncio.to_thread(self.cli, *args, token=token)

    def cli_started(self, *args: str, token: str | None = None) -> subprocess.Popen[str]:
        """``accord ARGS`` against this coordinator, started and left running (its stdout and
        stderr piped, as text): for commands that follow or wait, read off the event loop."""
        return subprocess.Popen(
            [ACCORD, *args],
            env=self.env(token),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.home,
        )

    def cli(
        self, *args: str, token: str | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``accord ARGS`` against this coordinator (token None = the admin fallback file)."""
        return subprocess.run(
            [ACCORD, *args],
            env=self.env(token),
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
            cwd=self.home,
        )
