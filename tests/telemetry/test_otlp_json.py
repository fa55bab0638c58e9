"""OTLP encoding: protobuf round trip and the OTLP JSON form ``accord runs trace --json`` prints."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from coordinator.store.records import SpanRecord
from coordinator.telemetry.otlp import otlp_json, records_from_resource_spans, to_resource_spans

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _spans() -> list[SpanRecord]:
    return [
        SpanRecord(
            trace_id=TRACE,
            span_id="00f067aa0ba902b7",
            parent_span_id="",
            name="run shipping/order-to-cash",
            start_ns=1_700_000_000_000_000_000,
            end_ns=1_700_000_002_000_000_000,
            team="shipping",
            status="ok",
            attributes={"accord.run_id": "r-1", "n": 3, "ratio": 0.5, "flag": True, "tags": ["a", "b"]},
            links=[{"trace_id": "1" * 32, "span_id": "2" * 16}],
            run_id="r-1",
        ),
        SpanRecord(
            trace_id=TRACE,
            span_id="1111111111111111",
            parent_span_id="00f067aa0ba902b7",
            name="engine.shell",
            start_ns=1_700_000_000_500_000_000,
            end_ns=1_700_000_001_000_000_000,
            team="payments",
            service="accord-agent",
            kind="client",
            status="error",
            status_message="exit code 3",
            events=[{"name": "exception", "time_ns": 1_700_000_000_900_000_000, "attributes": {"k": "v"}}],
        ),
    ]


def test_otlp_json_shape_follows_the_otlp_json_encoding() -> None:
    document = otlp_json(_spans())
    json.dumps(document)  # plain JSON
    assert [r["resource"]["attributes"][0]["value"]["stringValue"] for r in document["resourceSpans"]] == [
        "accord-coordinator",
        "accord-agent",
    ]
    agent = document["resourceSpans"][1]
    assert {"key": "accord.team", "value": {"stringValue": "payments"}} in agent["resource"]["attributes"]
    span = agent["scopeSpans"][0]["spans"][0]
    # Ids are hex (not base64), enums are integers, 64-bit integers are strings.
    assert span["traceId"] == TRACE
    assert span["spanId"] == "1111111111111111"
    assert span["parentSpanId"] == "00f067aa0ba902b7"
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    assert span["startTimeUnixNano"] == "1700000000500000000"
    assert span["status"] == {"code": 2, "message": "exit code 3"}
    assert span["events"][0]["timeUnixNano"] == "1700000000900000000"
    root = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert "parentSpanId" not in root
    assert root["links"] == [{"traceId": "1" * 32, "spanId": "2" * 16}]
    values = {a["key"]: a["value"] for a in root["attributes"]}
    assert values["n"] == {"intValue": "3"}
    assert values["ratio"] == {"doubleValue": 0.5}
    assert values["flag"] == {"boolValue": True}
    assert values["tags"] == {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}


def test_otlp_json_parses_back_as_traces_data_once_ids_are_base64() -> None:
    # A JSON OTLP consumer reads hex ids; protobuf's own JSON parser expects base64, so convert.
    import base64

    document = otlp_json(_spans())
    for resource in document["resourceSpans"]:
        for span in resource["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
            for link in span.get("links", []):
                for key in ("traceId", "spanId"):
                    link[key] = base64.b64encode(bytes.fromhex(link[key])).decode()
    parsed = json_format.ParseDict(document, TracesData())
    assert len(parsed.resource_spans) == 2


def test_protobuf_round_trip_keeps_everything_but_takes_the_team_from_the_caller() -> None:
    spans = _spans()
    records, rejected = records_from_resource_spans(to_resource_spans(spans), team="warehouse")
    assert rejected == 0
    assert [r.team for r in records] == ["warehouse", "warehouse"]
    for original, decoded in zip(spans, records, strict=True):
        assert decoded.trace_id == original.trace_id
        assert decoded.span_id == original.span_id
        assert decoded.parent_span_id == original.parent_span_id
        assert (decoded.name, decoded.kind, decoded.status) == (original.name, original.kind, original.status)
        assert decoded.status_message == original.status_message
        assert decoded.attributes == original.attributes
        assert decoded.events == original.events
        assert decoded.links == original.links
        assert decoded.service == original.service
    assert records[0].run_id == "r-1"


def test_spans_with_invalid_ids_are_rejected() -> None:
    resource_spans = to_resource_spans(_spans())
    resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x00" * 16
    resource_spans[1].scope_spans[0].spans[0].span_id = b"\x01"
    records, rejected = records_from_resource_spans(resource_spans, team="t")
    assert (records, rejected) == ([], 2)


def test_empty_trace_is_an_empty_document() -> None:
    assert otlp_json([]) == {"resourceSpans": []}


def test_boxes_of_another_team_are_marked_redacted_in_json() -> None:
    from coordinator.telemetry.visibility import scope_spans

    document = otlp_json(scope_spans(_spans(), "shipping"))
    agent = document["resourceSpans"][1]
    assert agent["resource"]["attributes"] == [{"key": "accord.team", "value": {"stringValue": "payments"}}]
    span = agent["scopeSpans"][0]["spans"][0]
    assert {"key": "accord.redacted", "value": {"boolValue": True}} in span["attributes"]
    assert "exit code 3" not in json.dumps(document)
