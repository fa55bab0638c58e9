"""One trace across every hop, with real processes.

The CLI (``accord run ... --wait`` with TRACEPARENT set) starts a three-team run on a real
coordinator subprocess; three real agent processes run it on the http (payments), shell
(warehouse, failing its first attempt) and python (shipping) engines. Then, span by span: one
trace id everywhere (CLI, coordinator, agents, the shell child's TRACEPARENT, the http service's
traceparent header), the parent-child structure, both attempts of the retried step, team-scoped
views, no sensitive value or secret in the spans table, and the same spans forwarded to a real
OTLP receiver named by OTEL_EXPORTER_OTLP_ENDPOINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.testing import AgentProcess, accord_executable
from tests.fakes.server import serve_in_loop
from tests.support.coordinator import CoordinatorProcess

CLI_TRACE = "5b8efff798038103d269b633813fc60c"
CLI_SPAN = "eee19b7ec3c1b174"
CARD_TOKEN = "tok_live_9f8e7d6c5b4a"
CHARGE_API_KEY = "sk_charge_0123456789abcdef"
WAREHOUSE_KEY = "wh_secret_fedcba9876543210"

CHARGE = """
contract: payments/charge
version: 1.0.0
input:
  type: object
  required: [order_id, card_token]
  properties: {order_id: {type: string}, card_token: {type: string}}
output:
  type: object
  required: [payment_ref]
  properties: {payment_ref: {type: string}}
sensitive: [input.card_token]
"""

RESERVE = """
contract: warehouse/reserve
version: 1.0.0
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}, card_token: {type: string}}
output:
  type: object
  required: [reservation]
  properties: {reservation: {type: string}}
retry: {max_attempts: 2, initial_backoff: 100ms}
"""

SHIP = """
contract: shipping/ship
version: 1.0.0
input:
  type: object
  required: [order_id, payment_ref, reservation]
  properties: {order_id: {type: string}, payment_ref: {type: string}, reservation: {type: string}}
output:
  type: object
  required: [shipment_id]
  properties: {shipment_id: {type: string}}
"""

WORKFLOW = """
workflow: shipping/order-to-cash
input:
  type: object
  required: [order_id, card_token]
  properties: {order_id: {type: string}, card_token: {type: string}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}", card_token: "${input.card_token}"}
  reserve:
    contract: warehouse/reserve@^1
    input: {order_id: "${input.order_id}", card_token: "${input.card_token}"}
  ship:
    contract: shipping/ship@^1
    input:
      order_id: "${input.order_id}"
      payment_ref: "${steps.charge.output.payment_ref}"
      reservation: "${steps.reserve.output.reservation}"
output:
  shipment_id: "${steps.ship.output.shipment_id}"
"""

# The warehouse's engine: records its TRACEPARENT, fails its first attempt with an error that
# names a secret and the (sensitive) card token, succeeds on the second.
RESERVE_SCRIPT = """
import json, os, sys
data = json.load(sys.stdin)
with open(os.environ["TRACE_FILE"], "a") as f:
    f.write(os.environ["ACCORD_ATTEMPT"] + " " + os.environ["TRACEPARENT"] + "\\n")
if os.environ["ACCORD_ATTEMPT"] == "1":
    sys.stderr.write("stock service refused key " + os.environ["WAREHOUSE_KEY"] + " for card " + data["card_token"] + "\\n")
    sys.exit(1)
print(json.dumps({"reservation": "res-" + data["order_id"]}))
"""

SHIP_MODULE = """
def ship(value, task):
    with open(TRACE_FILE, "a") as f:
        f.write(task.traceparent + "\\n")
    return {"shipment_id": "shp-" + value["order_id"]}
"""


class OtlpBackend(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC trace receiver: what an operator's backend would be."""

    def __init__(self) -> None:
        self.spans: dict[str, Any] = {}
        self._arrived = asyncio.Event()

    async def wait_for(self, span_ids: set[str], seconds: float = 15.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not span_ids <= set(self.spans):
                    self._arrived.clear()
                    await self._arrived.wait()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans[span.span_id.hex()] = span
        self._arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def otlp_backend() -> AsyncIterator[tuple[str, OtlpBackend]]:
    backend = OtlpBackend()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(backend, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", backend
    await server.stop(None)


@pytest.fixture
async def charge_service() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """The payments team's HTTP service the http engine calls; records every request's headers."""
    seen: list[dict[str, str]] = []

    async def charge(request: Request) -> Response:
        seen.append(dict(request.headers))
        body = await request.json()
        return JSONResponse({"payment_ref": f"pay-{body['order_id']}"})

    app = Starlette(routes=[Route("/charge", charge, methods=["POST"])])
    async with serve_in_loop(app) as url:
        yield f"{url}/charge", seen


@pytest.fixture
def traced_coordinator(
    tmp_path: Path, otlp_backend: tuple[str, OtlpBackend], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CoordinatorProcess]:
    """The real coordinator, forwarding to the OTLP backend (standard variables, its env only)."""
    with monkeypatch.context() as env:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{otlp_backend[0]}")
        proc = CoordinatorProcess.start(tmp_path / "accord-home")
    try:
        yield proc
    finally:
        proc.kill9()


@dataclass
class Scenario:
    coordinator: CoordinatorProcess
    tokens: dict[str, str]
    agents: list[AgentProcess]
    workdir: Path

    @property
    def shell_trace_file(self) -> Path:
        return self.workdir / "shell-traceparents.txt"

    @property
    def python_trace_file(self) -> Path:
        return self.workdir / "python-traceparents.txt"


def _agent(
    workdir: Path,
    coordinator: CoordinatorProcess,
    team: str,
    token: str,
    bindings: dict[str, Any],
    **env: str,
) -> AgentProcess:
    config = workdir / f"{team}-agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "team": team,
                "coordinator": coordinator.address,
                "token": "${secret:ACCORD_TOKEN}",
                "concurrency": 4,
                "implements": bindings,
            },
            sort_keys=False,
        )
    )
    agent = AgentProcess(
        config,
        workdir=workdir,
        agent_id=f"{team}-agent",
        # Export spans quickly rather than every 5 s.
        env={"ACCORD_TOKEN": token, "OTEL_BSP_SCHEDULE_DELAY": "100", **env},
    )
    return agent.start()


@pytest.fixture
async def scenario(
    traced_coordinator: CoordinatorProcess, charge_service: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> AsyncIterator[Scenario]:
    coordinator = traced_coordinator
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "warehouse", "shipping")}
    await coordinator.register_contract(tokens["payments"], CHARGE)
    await coordinator.register_contract(tokens["warehouse"], RESERVE)
    await coordinator.register_contract(tokens["shipping"], SHIP)
    await coordinator.register_workflow(tokens["shipping"], WORKFLOW)

    workdir = tmp_path / "agents"
    workdir.mkdir()
    scenario = Scenario(coordinator, tokens, [], workdir)
    (workdir / "ship_engine.py").write_text(
        f"TRACE_FILE = {str(scenario.python_trace_file)!r}\n" + textwrap.dedent(SHIP_MODULE)
    )
    url, _ = charge_service
    scenario.agents = [
        _agent(
            workdir,
            coordinator,
            "payments",
            tokens["payments"],
            {
                "payments/charge@1": {
                    "engine": "http",
                    "with": {"url": url, "headers": {"Authorization": "Bearer ${secret:CHARGE_API_KEY}"}},
                }
            },
            CHARGE_API_KEY=CHARGE_API_KEY,
        ),
        _agent(
            workdir,
            coordinator,
            "warehouse",
            tokens["warehouse"],
            {
                "warehouse/reserve@1": {
                    "engine": "shell",
                    "with": {
                        "command": ["python3", "-c", textwrap.dedent(RESERVE_SCRIPT)],
                        "env": {
                            "TRACE_FILE": str(scenario.shell_trace_file),
                            "WAREHOUSE_KEY": "${secret:WAREHOUSE_KEY}",
                        },
                    },
                }
            },
            WAREHOUSE_KEY=WAREHOUSE_KEY,
        ),
        _agent(
            workdir,
            coordinator,
            "shipping",
            tokens["shipping"],
            {
                "shipping/ship@1": {
                    "engine": "python",
                    "with": {"callable": "ship_engine:ship", "path": [str(workdir)]},
                }
            },
        ),
    ]
    for agent in scenario.agents:
        await agent.wait_for_log("registered", timeout=60)
    yield scenario
    for agent in scenario.agents:
        await asyncio.to_thread(agent.stop, 20)


def _cli_run(scenario: Scenario) -> dict[str, Any]:
    """``accord run --wait --json`` as the shipping team, inside the caller's trace."""
    env = scenario.coordinator.env(scenario.tokens["shipping"])
    env["TRACEPARENT"] = f"00-{CLI_TRACE}-{CLI_SPAN}-01"
    done = subprocess.run(
        [
            accord_executable(),
            "run",
            "shipping/order-to-cash",
            "--input",
            json.dumps({"order_id": "o-7", "card_token": CARD_TOKEN}),
            "--wait",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _trace(scenario: Scenario, run_id: str, token: str | None = None) -> list[pb.Span]:
    async with scenario.coordinator.client(token) as client:
        response = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
    assert response.trace_id == CLI_TRACE
    return list(response.spans)


def _complete(spans: list[pb.Span]) -> bool:
    names = [s.name for s in spans]
    agent_receives = names.count("agent.receive")
    return (
        any(n.startswith("run ") for n in names)
        and sum(n.startswith("attempt ") for n in names) == 4
        and agent_receives == 4
        and sum(n.startswith("engine.") for n in names) == 4
    )


async def _wait_for_every_span(scenario: Scenario, run_id: str) -> list[pb.Span]:
    deadline = time.monotonic() + 30
    spans: list[pb.Span] = []
    while time.monotonic() < deadline:
        spans = await _trace(scenario, run_id)
        if _complete(spans):
            return spans
        await asyncio.sleep(0.2)
    raise AssertionError("spans missing: " + ", ".join(sorted(s.name for s in spans)))


def _attrs(span: pb.Span) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(span.attributes_json) if span.attributes_json else {}
    return result


async def test_one_trace_across_cli_coordinator_agents_and_engines(
    scenario: Scenario,
    charge_service: tuple[str, list[dict[str, str]]],
    otlp_backend: tuple[str, OtlpBackend],
) -> None:
    # In a thread: the http service under test shares this event loop.
    run = await asyncio.to_thread(_cli_run, scenario)
    run_id = run["run_id"]
    assert run["trace_id"] == CLI_TRACE  # the CLI's TRACEPARENT made the run part of its trace
    spans = await _wait_for_every_span(scenario, run_id)

    # ---- one trace id across every hop ----
    assert {s.trace_id for s in spans} == {CLI_TRACE}
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans)

    # ---- structure, span by span ----
    (run_span,) = [s for s in spans if s.name == "run shipping/order-to-cash"]
    assert run_span.parent_span_id == CLI_SPAN  # the CLI's span is the run's parent
    steps = {_attrs(s)["accord.step_id"]: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"charge", "reserve", "ship"}
    assert all(s.parent_span_id == run_span.span_id for s in steps.values())
    attempts = [s for s in spans if s.name.startswith("attempt ")]
    for attempt in attempts:
        step = by_id[attempt.parent_span_id]
        assert step in steps.values()
        assert _attrs(attempt)["accord.step_id"] == _attrs(step)["accord.step_id"]
        assert _attrs(attempt)["accord.agent_id"]  # the agent that took it
    receives = [s for s in spans if s.name == "agent.receive"]
    assert {r.parent_span_id for r in receives} == {a.span_id for a in attempts}
    for receive in receives:
        children = sorted(
            (s for s in spans if s.parent_span_id == receive.span_id), key=lambda s: s.start_unix_nano
        )
        names = [c.name for c in children]
        assert names[0].startswith("engine."), names
        assert receive.team == by_id[receive.parent_span_id].team  # the team whose agent took it
        for child in children:
            assert child.team == receive.team and child.service == receive.service

    # ---- the retried step shows both attempts ----
    reserve_attempts = sorted(
        (a for a in attempts if a.parent_span_id == steps["reserve"].span_id),
        key=lambda a: _attrs(a)["accord.attempt"],
    )
    assert [_attrs(a)["accord.attempt"] for a in reserve_attempts] == [1, 2]
    first, second = reserve_attempts
    assert first.status == pb.SPAN_STATUS_ERROR and "stock service refused" in first.status_message
    assert second.status == pb.SPAN_STATUS_OK
    for attempt in reserve_attempts:
        assert any(r.parent_span_id == attempt.span_id for r in receives)

    # ---- the engines saw the same trace, under their engine span ----
    engine_spans = {s.span_id: s for s in spans if s.name.startswith("engine.")}
    shell_lines = scenario.shell_trace_file.read_text().split()
    shell_parents = dict(zip(shell_lines[::2], shell_lines[1::2], strict=True))
    assert set(shell_parents) == {"1", "2"}
    for attempt_number, traceparent in shell_parents.items():
        _, trace_id, parent_id, _ = traceparent.split("-")
        assert trace_id == CLI_TRACE
        engine = engine_spans[parent_id]
        assert engine.name == "engine.shell"
        receive = by_id[engine.parent_span_id]
        assert _attrs(by_id[receive.parent_span_id])["accord.attempt"] == int(attempt_number)
    _, seen = charge_service
    assert len(seen) == 1
    _, trace_id, parent_id, _ = seen[0]["traceparent"].split("-")
    assert trace_id == CLI_TRACE and engine_spans[parent_id].name == "engine.http"
    (python_parent,) = scenario.python_trace_file.read_text().split()
    _, trace_id, parent_id, _ = python_parent.split("-")
    assert trace_id == CLI_TRACE and engine_spans[parent_id].name == "engine.python"

    # ---- team boundaries ----
    as_payments = {s.span_id: s for s in await _trace(scenario, run_id, scenario.tokens["payments"])}
    http_engine = next(s for s in engine_spans.values() if s.name == "engine.http")
    shell_engine = next(s for s in engine_spans.values() if s.name == "engine.shell")
    own = as_payments[http_engine.span_id]
    assert not own.redacted and own.name == "engine.http" and _attrs(own)  # all attributes
    foreign = as_payments[shell_engine.span_id]
    assert foreign.redacted and foreign.team == "warehouse"
    assert foreign.name == "warehouse/reserve@1.0.0"
    assert set(_attrs(foreign)) <= {"accord.contract", "accord.contract_version"}
    assert foreign.status_message == "" and foreign.events_json == ""
    foreign_attempt = as_payments[first.span_id]
    assert foreign_attempt.redacted and foreign_attempt.status == pb.SPAN_STATUS_ERROR
    assert "stock service" not in foreign_attempt.status_message + foreign_attempt.attributes_json
    as_warehouse = {s.span_id: s for s in await _trace(scenario, run_id, scenario.tokens["warehouse"])}
    assert not as_warehouse[first.span_id].redacted
    assert as_warehouse[http_engine.span_id].redacted

    # ---- no sensitive value and no secret in any stored span ----
    with sqlite3.connect(scenario.coordinator.db) as db:
        rows = db.execute("SELECT * FROM spans").fetchall()
    # Ids are stored as bytes: shown in hex.
    table = repr([[v.hex() if isinstance(v, bytes) else v for v in row] for row in rows])
    assert len(rows) >= len(spans) and first.span_id in table
    for secret in (CARD_TOKEN, CHARGE_API_KEY, WAREHOUSE_KEY, *scenario.tokens.values()):
        assert secret not in table

    # ---- the same spans forwarded to the OTLP backend ----
    _, backend = otlp_backend
    await backend.wait_for(set(by_id))
    assert set(by_id) <= set(backend.spans)
    forwarded = backend.spans[run_span.span_id]
    assert forwarded.trace_id.hex() == CLI_TRACE and forwarded.parent_span_id.hex() == CLI_SPAN
    exported = repr(list(backend.spans.values())).encode() + b"".join(
        span.SerializeToString() for span in backend.spans.values()
    )
    # The forwarded spans do carry the failure the warehouse's engine printed its key and the
    # card token into: the values were scrubbed, not absent from the start.
    assert b"stock service refused" in exported
    for secret in (CARD_TOKEN, CHARGE_API_KEY, WAREHOUSE_KEY, *scenario.tokens.values()):
        assert secret.encode() not in exported, "a sensitive value, secret or token was forwarded"

    # ---- the coordinator's log records carry the trace id ----
    assert f"run {run_id} succeeded trace_id={CLI_TRACE}" in scenario.coordinator.log()

    # ---- the terminal waterfall and OTLP JSON of the same trace ----
    shown = await asyncio.to_thread(
        scenario.coordinator.cli, "runs", "trace", run_id, token=scenario.tokens["shipping"]
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    # One row per hop by default (the CLI's span, the run, its steps); every span on demand.
    assert lines[0].startswith(f"trace {CLI_TRACE} · ") and f"hops of {len(spans)} spans" in lines[0]
    assert any(line.lstrip().startswith("run shipping/order-to-cash") for line in lines)
    everything = await asyncio.to_thread(
        scenario.coordinator.cli, "runs", "trace", run_id, "--all-spans", token=scenario.tokens["shipping"]
    )
    assert everything.stdout.splitlines()[0].startswith(f"trace {CLI_TRACE} · {len(spans)} spans")
    as_json = await asyncio.to_thread(
        scenario.coordinator.cli, "runs", "trace", run_id, "--json", token=scenario.tokens["shipping"]
    )
    document = json.loads(as_json.stdout)
    ids = {s["spanId"] for r in document["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]}
    assert ids == set(by_id)
