"""The agent's spans sit inside the attempt's trace, carry the run/step/attempt/contract, pass the
engine span's context to the engine, and never carry a secret. The agent runs in-process here (so
its spans can be read from an in-memory exporter) against a real coordinator process."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.agent import Agent, AgentOptions
from team_agent.client import GatewayClient
from team_agent.config import load_config
from team_agent.redact import Redactor
from team_agent.tracing import build_tracer_provider
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    CoordinatorProcess,
    agent_config,
    coordinator_fixture,
    shell,
    team_with_flow,
)

SECRET = "tr4ce-s3cret-value"


async def test_spans_follow_the_attempt_and_hide_secrets(
    coordinator_process: CoordinatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_TEST_SECRET", SECRET)
    team = await team_with_flow(
        coordinator_process,
        max_attempts=1,
        output_schema={"type": "object", "properties": {"extra": {"type": "integer"}}},
    )
    code = """
        import json, os, sys
        print("oops " + os.environ["KEY"], file=sys.stderr)
        given = json.load(sys.stdin)
        print(json.dumps({"traceparent": os.environ["TRACEPARENT"], **({"extra": "x"} if given.get("bad") else {})}))
        sys.exit(0 if given.get("ok") else 1)
    """
    config_text = agent_config(
        team, {f"{team.name}/work@1": shell(code, env={"KEY": "${secret:TRACE_TEST_SECRET}"})}
    )
    config_text = config_text.replace("${secret:ACCORD_TOKEN}", team.token)
    path = tmp_path / "agent.yaml"
    path.write_text(config_text)
    assert yaml.safe_load(config_text)["token"] == team.token

    loaded = load_config(path)
    redactor = Redactor(loaded.config.secret_values)
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(
        team=team.name,
        coordinator=coordinator_process.address,
        token=team.token,
        redactor=redactor,
        exporter=exporter,
    )
    client = GatewayClient(loaded.config.coordinator, lambda: loaded.config.token, redactor)
    agent = Agent(
        loaded,
        config_path=path,
        options=AgentOptions(agent_id=f"{team.name}-inproc", state_dir=tmp_path / "state", grace=1.0),
        client=client,
        tracer=provider.get_tracer("test"),
        redactor=redactor,
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(agent.run(stop))
    try:
        ok = await team.wait_run(await team.start_run({"ok": True}))
        failed = await team.wait_run(await team.start_run({"ok": False}))
        broken = await team.wait_run(await team.start_run({"ok": True, "bad": True}))
    finally:
        stop.set()
        await serving
        await client.close()
    provider.force_flush()
    assert ok.status == pb.RUN_STATUS_SUCCEEDED and failed.status == pb.RUN_STATUS_FAILED
    assert broken.status == pb.RUN_STATUS_FAILED

    spans = exporter.get_finished_spans()
    ok_spans = [s for s in spans if s.attributes and s.attributes.get("accord.run_id") == ok.run_id]
    by_name = {s.name: s for s in ok_spans}
    # Checks that pass leave no span (a failing one does: below).
    assert set(by_name) == {"agent.receive", "engine.shell"}
    receive = by_name["agent.receive"]
    assert all(format(s.context.trace_id, "032x") == ok.trace_id for s in ok_spans)
    assert receive.parent is not None  # the attempt span, made by the coordinator
    for name in ("engine.shell",):
        assert by_name[name].parent is not None and by_name[name].parent.span_id == receive.context.span_id
    assert receive.attributes is not None
    assert receive.attributes["accord.step_id"] == "work"
    assert receive.attributes["accord.attempt"] == 1
    # The coordinator's form of the contract: name and exact version as two attributes.
    assert receive.attributes["accord.contract"] == f"{team.name}/work"
    assert receive.attributes["accord.contract_version"] == "1.0.0"
    # The engine got the engine span's context.
    engine_span = by_name["engine.shell"]
    traceparent = json.loads(ok.output_json)["traceparent"]
    assert traceparent.split("-")[2] == format(engine_span.context.span_id, "016x")

    # An output that breaks the contract: an error span of its own, under agent.receive, saying so.
    broken_spans = {
        s.name: s for s in spans if s.attributes and s.attributes.get("accord.run_id") == broken.run_id
    }
    assert set(broken_spans) == {"agent.receive", "engine.shell", "agent.validate_output"}
    check = broken_spans["agent.validate_output"]
    assert check.parent is not None and check.parent.span_id == broken_spans["agent.receive"].context.span_id
    assert "breaks contract" in (check.status.description or "") and "extra" in (
        check.status.description or ""
    )

    # The failed attempt's spans carry the (redacted) error, never the secret.
    failed_receive = next(
        s
        for s in spans
        if s.name == "agent.receive" and s.attributes and s.attributes.get("accord.run_id") == failed.run_id
    )
    assert failed_receive.status.description and "***" in failed_receive.status.description
    assert SECRET not in failed.steps[0].attempts[0].error.details_json
    # What the in-memory exporter received went through the redacting exporter.
    for span in spans:
        assert SECRET not in (span.status.description or "")
        assert SECRET not in json.dumps(dict(span.attributes or {}), default=str)
    logging.getLogger(__name__).info("checked %d spans", len(spans))
