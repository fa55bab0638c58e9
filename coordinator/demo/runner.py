"""``accord demo``: everything a new user needs to see, embedded, in one command.

It starts a coordinator (SQLite in a temporary ACCORD_HOME), four team agents on different
engines (payments on ``python``, warehouse on ``shell``, shipping on ``http`` in front of a small
service, crm on ``python``), registers the example contracts and the cross-team workflow
``shipping/order-to-cash``, runs it three times (one clean run, one where the card gateway times
out once and the retry succeeds, one where the card is declined for good), shows a breaking
contract change being refused with its consumer report, prints a summary with one run's trace
waterfall and the UI address, and stops everything it started.

Every part runs as the real thing a user would run: the coordinator and the agents are the
``accord`` processes themselves, talking gRPC on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import AccordError, FailedPreconditionError
from contracts.private_files import private_umask, secure_directory
from coordinator.client import Client

TERMINAL = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}
STATUS = {v: k.removeprefix("RUN_STATUS_").lower() for k, v in pb.RunStatus.items()}
WORKFLOW = "shipping/order-to-cash"

# The order of the event-driven hand-off: payments publishes payments/order-paid for it.
EVENT_ORDER = "paid-1004"

# (order id, amount, what the run shows)
RUNS = [
    ("o-1001", 4200, "a clean cross-team run"),
    ("flaky-1002", 1999, "the card gateway times out once; the retry succeeds"),
    ("declined-1003", 5000, "the card is declined: non-retryable, the run fails for good"),
]


class DemoError(AccordError):
    exit_code = 1


@dataclass
class Demo:
    home: Path
    ui: str = "127.0.0.1:7441"
    say: Callable[[str], None] = print
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    address: str = ""
    ui_address: str = ""
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    # ---- processes ----

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ACCORD_HOME": str(self.home), **(env or {})},
                start_new_session=True,  # its own process group: stopped as a whole
            )
        self.processes.append((name, process))
        return process

    def _log(self, name: str) -> str:
        try:
            return (self.home / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def _logged(self, name: str, text: str) -> bool:
        return text in self._log(name)

    def _wait_for(self, what: str, ready: Callable[[], bool], name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        process = dict(self.processes)[name]
        while time.monotonic() < deadline:
            if ready():
                return
            if process.poll() is not None:
                tail = "\n".join(self._log(name).splitlines()[-15:])
                raise DemoError(f"{what} exited with code {process.returncode}:\n{tail}")
            time.sleep(0.05)
        raise DemoError(
            f"{what} did not become ready within {timeout:.0f}s (log: {self.home}/logs/{name}.log)"
        )

    def stop(self) -> None:
        """SIGTERM every process group we started (agents first), then SIGKILL stragglers."""
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        self.processes.clear()

    # ---- the story ----

    def start_coordinator(self) -> None:
        ui = self.ui if _port_free(self.ui) else "127.0.0.1:0"
        self._spawn(
            "coordinator",
            [_accord(), "coordinator", "start", "--listen", "127.0.0.1:0", "--ui", ui],
        )
        state = self.home / "coordinator.json"

        def ready() -> bool:
            try:
                data = json.loads(state.read_text())
            except (OSError, ValueError):
                return False
            self.address = data.get("grpc", "")
            self.ui_address = data.get("ui", "")
            return bool(self.address)

        self._wait_for("the coordinator", ready, "coordinator")
        self.admin_token = (self.home / "admin.token").read_text().strip()

    def client(self, team: str | None = None) -> Client:
        token = self.tokens[team] if team else self.admin_token
        return Client(address=self.address, token=token)

    def create_teams(self, teams: list[str]) -> None:
        with self.client() as admin:
            for team in teams:
                response = admin.coordinator.CreateTeam(pb.CreateTeamRequest(name=team))
                self.tokens[team] = response.token

    def register_contracts(self) -> list[str]:
        registered = []
        for path in sorted(_assets().joinpath("contracts").iterdir()):
            text = path.read_text()
            team = yaml.safe_load(text)["contract"].split("/")[0]
            with self.client(team) as client:
                response = client.coordinator.RegisterContract(
                    pb.RegisterContractRequest(source_text=text, source_name=path.name)
                )
            registered.append(f"{response.contract.name}@{response.contract.version}")
        return registered

    def register_workflow(self) -> int:
        text = _assets().joinpath("order-to-cash.yaml").read_text()
        with self.client("shipping") as client:
            response = client.coordinator.RegisterWorkflow(
                pb.RegisterWorkflowRequest(source_text=text, source_name="order-to-cash.yaml")
            )
        return int(response.workflow.version)

    def start_agents(self) -> dict[str, str]:
        shipping_port = _free_port()
        self._spawn(
            "shipping-service",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "coordinator.demo.teams.shipping:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(shipping_port),
                "--log-level",
                "warning",
            ],
        )
        self._wait_for("the shipping service", lambda: _listening(shipping_port), "shipping-service")
        bindings = {
            "payments": (
                "payments/charge-card@1",
                "python",
                {"callable": "coordinator.demo.teams.payments:charge_card"},
            ),
            "warehouse": (
                "warehouse/reserve-stock@2",
                "shell",
                {"command": [sys.executable, "-m", "coordinator.demo.teams.warehouse"]},
            ),
            "shipping": (
                "shipping/create-shipment@1",
                "http",
                {"url": f"http://127.0.0.1:{shipping_port}/shipments", "timeout": "10s"},
            ),
            "crm": (
                "crm/notify-customer@1",
                "python",
                {"callable": "coordinator.demo.teams.crm:notify_customer"},
            ),
        }
        configs = self.home / "agents"
        configs.mkdir(exist_ok=True)
        for team, (contract, engine, with_) in bindings.items():
            config = {
                "team": team,
                "coordinator": self.address,
                "token": "${secret:ACCORD_TOKEN}",
                "concurrency": 4,
                "secrets": {"provider": "env"},
                "implements": {contract: {"engine": engine, "with": with_}},
            }
            path = configs / f"{team}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            name = f"agent-{team}"
            self._spawn(
                name,
                [
                    _accord(),
                    "agent",
                    "start",
                    "--config",
                    str(path),
                    "--agent-id",
                    f"demo-{team}",
                    "--state-dir",
                    str(self.home / name),
                ],
                # agents export spans in batches; a short delay lets the demo show them at once
                env={"ACCORD_TOKEN": self.tokens[team], "OTEL_BSP_SCHEDULE_DELAY": "200"},
            )
        for team in bindings:
            name = f"agent-{team}"
            self._wait_for(f"the {team} agent", partial(self._logged, name, "registered"), name)
        return {team: engine for team, (_c, engine, _w) in bindings.items()}

    def run(self, order_id: str, amount: int) -> pb.Run:
        """Start the run and answer with it ended: one call that waits (at most 60 s)."""
        with self.client("shipping") as client:
            started = client.coordinator.StartRun(
                pb.StartRunRequest(
                    workflow=WORKFLOW,
                    input_json=json.dumps({"order_id": order_id, "amount_cents": amount}),
                    idempotency_key=f"demo-{order_id}",
                    wait_ms=60_000,
                ),
                timeout=90,
            )
        run: pb.Run = started.run
        if run.status not in TERMINAL:
            raise DemoError(
                f"run {run.run_id} did not finish within 60s; see `accord runs show {run.run_id}`"
            )
        return run

    def wait(self, run_id: str) -> pb.Run:
        """The run once it ended (watched, at most 60 s)."""
        with self.client("shipping") as client:
            run = client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id)).run
            deadline = time.monotonic() + 60
            while run.status not in TERMINAL and time.monotonic() < deadline:
                for update in client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=run.run_id)):
                    run = update.run
                    if run.status in TERMINAL:
                        break
            if run.status not in TERMINAL:
                raise DemoError(
                    f"run {run.run_id} did not finish within 60s; see `accord runs show {run.run_id}`"
                )
            final: pb.Run = client.coordinator.GetRun(pb.GetRunRequest(run_id=run.run_id)).run
            return final

    def event_hand_off(self, order_id: str, amount: int) -> tuple[str, pb.Run]:
        """payments publishes payments/order-paid; shipping's order-to-cash starts from its
        trigger (the teams do not call each other). The event id and the run it started."""
        with self.client("payments") as client:
            event = client.coordinator.PublishEvent(
                pb.PublishEventRequest(
                    contract="payments/order-paid@1",
                    payload_json=json.dumps({"order_id": order_id, "amount_cents": amount}),
                    request_id=f"demo-{order_id}",
                )
            ).event
            deadline = time.monotonic() + 30
            while not event.handled_unix_ms:
                if time.monotonic() > deadline:
                    raise DemoError(f"the triggers of event {event.event_id} did not run within 30s")
                time.sleep(0.05)
                event = client.coordinator.GetEvent(pb.GetEventRequest(event_id=event.event_id)).event
        if len(event.triggered_runs) != 1:
            raise DemoError(f"event {event.event_id} started {len(event.triggered_runs)} runs, not 1")
        return event.event_id, self.wait(event.triggered_runs[0])

    def breaking_change_report(self) -> list[str]:
        text = _assets().joinpath("charge-card-1.3.0-breaking.yaml").read_text()
        with self.client("payments") as client:
            try:
                client.coordinator.RegisterContract(
                    pb.RegisterContractRequest(
                        source_text=text, source_name="charge-card-1.3.0.yaml", dry_run=False
                    )
                )
            except FailedPreconditionError as refused:
                return str(refused).splitlines()
        raise DemoError("the breaking change to payments/charge-card was accepted; it must be refused")

    def trace(self, run_id: str) -> str:
        from coordinator.api.convert import span_from_pb
        from coordinator.telemetry.waterfall import WaterfallStyle, render_waterfall

        # Agents deliver their spans asynchronously: wait until the trace stops growing.
        with self.client("shipping") as client:
            response = client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
            deadline, stable_since = time.monotonic() + 10, time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - stable_since < 1.5:
                time.sleep(0.25)
                again = client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
                if len(again.spans) != len(response.spans):
                    response, stable_since = again, time.monotonic()
        views = [span_from_pb(span) for span in response.spans]
        # One row per hop, as `accord runs trace` prints it (--all-spans for every span).
        return render_waterfall(
            views, trace_id=response.trace_id, style=WaterfallStyle(bar_width=28), all_spans=False
        )


def run_demo(*, keep_running: bool, home: Path | None, ui: str, say: Callable[[str], None]) -> int:
    """The whole demo; returns the process exit code."""
    temporary = home is None
    home = home or Path(tempfile.mkdtemp(prefix="accord-demo-"))
    secure_directory(home)  # owner-only like any ACCORD_HOME (docs/production.md)
    private_umask()  # the demo's logs and configs in it too
    demo = Demo(home=home, ui=ui, say=say)
    failed_story = False
    try:
        say(f"[1/8] starting the coordinator (SQLite in {home})")
        demo.start_coordinator()
        say(f"      gRPC on {demo.address}, UI on http://{demo.ui_address or 'off'}")
        teams = ["payments", "warehouse", "shipping", "crm"]
        say(f"[2/8] creating teams: {', '.join(teams)} (each gets its own token)")
        demo.create_teams(teams)
        say("[3/8] each team registers its contracts")
        for ref in demo.register_contracts():
            say(f"      {ref}")
        say("[4/8] starting one agent per team, each beside its own engine")
        for team, engine in demo.start_agents().items():
            say(f"      {team:<10} engine: {engine}")
        say(
            f"[5/8] shipping registers the cross-team workflow {WORKFLOW} (type-checked against the contracts)"
        )
        version = demo.register_workflow()
        say(f"      {WORKFLOW} version {version}")
        say("[6/8] running it")
        results = []
        for order_id, amount, story in RUNS:
            started = time.monotonic()
            run = demo.run(order_id, amount)
            elapsed = time.monotonic() - started
            results.append((run, story))
            line = f"      {order_id:<14} {STATUS[run.status]:<9} {elapsed * 1000:7.0f} ms  {story}"
            if run.error.message:
                line += f"\n      {'':<14} error: {run.error.type}: {run.error.message}"
            say(line)
        expected = [pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED]
        failed_story = [run.status for run, _ in results] != expected
        say(
            "[7/8] payments publishes the event payments/order-paid; shipping's workflow starts from its"
            " trigger (no call between the teams)"
        )
        started = time.monotonic()
        event_id, handed = demo.event_hand_off(EVENT_ORDER, 1500)
        elapsed = time.monotonic() - started
        say(f"      {event_id} started {handed.run_id}")
        say(
            f"      {EVENT_ORDER:<14} {STATUS[handed.status]:<9} {elapsed * 1000:7.0f} ms  an event-driven hand-off"
        )
        failed_story = failed_story or handed.status != pb.RUN_STATUS_SUCCEEDED
        say("[8/8] payments tries to register a breaking change inside major 1 (charge-card@1.3.0)")
        for line in demo.breaking_change_report():
            say(f"      {line}")
        flaky = results[1][0]
        say("")
        say(f"Trace of run {flaky.run_id} ({flaky.workflow}, order flaky-1002), as shipping sees it:")
        say(demo.trace(flaky.run_id).rstrip())
        say("")
        if keep_running:
            say("Everything is still running. In another terminal:")
            say(f"  export ACCORD_HOME={home} ACCORD_COORDINATOR={demo.address}")
            for run, _story in results:
                say(f"  accord runs show {run.run_id}")
            say(f"  accord runs trace {flaky.run_id}")
            if demo.ui_address:
                say(f"  open http://{demo.ui_address}")
                say(f"  and sign in with this demo's admin token: {demo.admin_token}")
            say("Press Ctrl-C to stop.")
            try:
                while all(process.poll() is None for _n, process in demo.processes):
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        else:
            say("Run `accord demo --keep-running` to explore these runs in the UI and the CLI.")
        if failed_story:
            say(f"error: the runs did not end as the demo expects (see above and the logs in {home}/logs)")
            return 1
        return 0
    finally:
        say("stopping the agents, the shipping service and the coordinator")
        demo.stop()
        if temporary and not keep_running and not failed_story:
            shutil.rmtree(home, ignore_errors=True)


def _assets() -> Any:
    return resources.files("coordinator.demo").joinpath("assets")


def _accord() -> str:
    beside = Path(sys.executable).parent / "accord"
    return str(beside) if beside.exists() else (shutil.which("accord") or "accord")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(address: str) -> bool:
    host, _, port = address.rpartition(":")
    if port == "0" or address == "off":
        return True
    with socket.socket() as sock:
        try:
            sock.bind((host or "127.0.0.1", int(port)))
        except (OSError, ValueError):
            return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
