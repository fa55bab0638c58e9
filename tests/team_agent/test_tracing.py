"""The agent's tracer provider follows the run's sampling decision, carried in the task's
``traceparent`` flags, whatever sampler the agent's own environment names."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from team_agent.redact import Redactor
from team_agent.tracing import (
    TokenFollowingExporter,
    build_tracer_provider,
    extract_context,
    inject_context,
)

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


def test_spans_go_out_with_the_token_in_use() -> None:
    """The agent's token may change while it runs (reloaded from its secret file): the exporter
    is made anew for the new token, and the old one shut down."""
    made: list[tuple[str, InMemorySpanExporter]] = []
    shut: list[str] = []

    def make(token: str) -> InMemorySpanExporter:
        class Recording(InMemorySpanExporter):
            def shutdown(self) -> None:
                shut.append(token)
                super().shutdown()

        made.append((token, Recording()))
        return made[-1][1]

    current = ["old"]
    exporter = TokenFollowingExporter(make, lambda: current[0])
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for name in ("first", "second", "third"):
        with tracer.start_as_current_span(name):
            pass
        current[0] = "new"
    assert [(token, [s.name for s in e.get_finished_spans()]) for token, e in made] == [
        ("old", ["first"]),
        ("new", ["second", "third"]),
    ]
    assert shut == ["old"]
    provider.shutdown()
    assert shut == ["old", "new"]


def test_spans_are_exported_with_every_secret_masked_and_clean_ones_as_they_are() -> None:
    secret = "s3cr3t-value"
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(
        team="payments",
        coordinator="127.0.0.1:1",
        token="t",
        redactor=Redactor([secret, "other-secret"]),
        exporter=exporter,
    )
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("clean", attributes={"accord.run_id": "run-1", "n": 3}):
            pass
        with tracer.start_as_current_span(f"named {secret}"):
            pass
        with tracer.start_as_current_span("attribute", attributes={"url": f"https://x/?k={secret}"}):
            pass
        with tracer.start_as_current_span("listed", attributes={"args": ["a", f'"{secret}"', "b"]}):
            pass
        with tracer.start_as_current_span("event") as span:
            span.add_event(f"saw {secret}", {"why": f"because {secret}"})
        with tracer.start_as_current_span("status") as span:
            span.set_status(Status(StatusCode.ERROR, f"failed with other-secret and {secret}"))
        with tracer.start_as_current_span("url-encoded", attributes={"q": "a=s3cr3t-value"}):
            pass
        provider.force_flush()
        spans = {s.name: s for s in exporter.get_finished_spans()}
        assert set(spans) == {
            "clean",
            "named ***",
            "attribute",
            "listed",
            "event",
            "status",
            "url-encoded",
        }
        assert dict(spans["clean"].attributes or {}) == {"accord.run_id": "run-1", "n": 3}
        assert dict(spans["attribute"].attributes or {}) == {"url": "https://x/?k=***"}
        assert tuple((spans["listed"].attributes or {})["args"]) == ("a", '"***"', "b")
        assert [(e.name, dict(e.attributes or {})) for e in spans["event"].events] == [
            ("saw ***", {"why": "because ***"})
        ]
        assert spans["status"].status.description == "failed with *** and ***"
        assert dict(spans["url-encoded"].attributes or {}) == {"q": "a=***"}
    finally:
        provider.shutdown()


def test_the_resource_is_the_agents_and_hashes_as_a_plain_resource_would() -> None:
    provider = build_tracer_provider(
        team="payments", coordinator="127.0.0.1:1", token="t", redactor=Redactor(()), export=False
    )
    resource = provider.resource
    assert resource.attributes["service.name"] == "accord-agent"
    assert resource.attributes["accord.team"] == "payments"
    plain = Resource(resource.attributes, resource.schema_url)
    assert hash(resource) == hash(plain) and resource == plain
