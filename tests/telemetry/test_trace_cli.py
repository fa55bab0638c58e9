"""``accord runs trace``: against a real gRPC server answering GetRunTrace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from coordinator.api.convert import span_to_pb
from coordinator.cli._apps import app
from coordinator.telemetry.visibility import scope_spans

from .spans_fixture import TRACE, three_team_trace


class TraceOnly(pb_grpc.CoordinatorServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def GetRunTrace(self, request: pb.GetRunTraceRequest, context: Any) -> pb.GetRunTraceResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        if request.run_id != "r-1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.run_id} not found")
        spans = [span_to_pb(v) for v in scope_spans(three_team_trace(), "payments")]
        return pb.GetRunTraceResponse(trace_id=TRACE, spans=spans)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[TraceOnly]:
    servicer = TraceOnly()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_CoordinatorServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    monkeypatch.setenv("ACCORD_COORDINATOR", f"127.0.0.1:{port}")
    monkeypatch.setenv("ACCORD_TOKEN", "pay-token")
    yield servicer
    grpc_server.stop(None)


def test_one_row_per_hop_by_default(server: TraceOnly) -> None:
    result = CliRunner().invoke(app, ["runs", "trace", "r-1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"trace {TRACE} · 3 hops of 7 spans")
    names = [line[: lines[1].index("team")].rstrip() for line in lines[2:]]
    assert names == [
        "workflow shipping/order-to-cash (other team)",
        "  charge · payments/charge-card@1.2.0",
        "  reserve · warehouse/reserve-stock@2.0.1",
    ]
    assert lines[3].rstrip().endswith("ok (2 attempts)")
    assert "engine.http" not in result.stdout and "attempt 1" not in result.stdout


def test_waterfall_in_the_terminal(server: TraceOnly) -> None:
    result = CliRunner().invoke(app, ["runs", "trace", "r-1", "--all-spans"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"trace {TRACE} · 7 spans")
    assert any(line.startswith("      engine.http") and line.endswith("error  HTTP 504") for line in lines)
    assert any("warehouse/reserve-stock@2.0.1 (other team)" in line for line in lines)
    assert "engine.shell" not in result.stdout
    assert server.metadata[0]["authorization"] == "Bearer pay-token"


def test_json_is_otlp(server: TraceOnly) -> None:
    result = CliRunner().invoke(app, ["runs", "trace", "r-1", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    spans = [s for r in document["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    assert len(spans) == 7 and {s["traceId"] for s in spans} == {TRACE}
    # Every span says which hop it belongs to: the step id ("" for the run's own).
    hops = {
        s["name"]: {a["key"]: a["value"].get("stringValue") for a in s["attributes"]}["accord.hop"]
        for s in spans
    }
    assert hops["engine.http"] == "charge" and hops["attempt 2 payments/charge-card@1.2.0"] == "charge"
    assert hops["workflow shipping/order-to-cash"] == ""


def test_unknown_run_exits_2_with_the_servers_message(server: TraceOnly) -> None:
    result = CliRunner().invoke(app, ["runs", "trace", "nope"])
    assert result.exit_code == 2
    assert "run nope not found" in result.output
