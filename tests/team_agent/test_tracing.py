"""The agent's tracer provider follows the run's sampling decision, carried in the task's
``traceparent`` flags, whatever sampler the agent's own environment names."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_agent.redact import Redactor
from team_agent.tracing import build_tracer_provider, extract_context, inject_context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ATTEMPT_SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize("agent_sampler", ["", "always_on", "traceidratio", "parentbased_always_off"])
def test_an_unsampled_task_records_nothing_and_a_sampled_one_everything(
    agent_sampler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if agent_sampler:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", agent_sampler)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(
        team="payments", coordinator="127.0.0.1:1", token="t", redactor=Redactor(()), exporter=exporter
    )
    tracer = provider.get_tracer("test")
    try:
        seen: dict[str, str] = {}
        for flags in ("00", "01"):
            task_context = extract_context({"traceparent": f"00-{TRACE}-{ATTEMPT_SPAN}-{flags}"})
            with tracer.start_as_current_span("agent.receive", context=task_context) as receive:
                assert receive.is_recording() == (flags == "01")
                with tracer.start_as_current_span("engine.shell"):
                    seen[flags] = inject_context()["traceparent"]  # what the engine is handed
        provider.force_flush()
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["engine.shell", "agent.receive"]  # the sampled task's only
        assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE}
        # The engine inherits the decision too.
        assert seen["00"].endswith("-00") and seen["00"].split("-")[1] == TRACE
        assert seen["01"].endswith("-01")
    finally:
        provider.shutdown()
