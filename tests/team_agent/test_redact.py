"""Secret values are masked in every common encoding, in text, JSON, logs and requests."""

from __future__ import annotations

import io
import json
import logging

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2
from team_agent.client import _redact_message
from team_agent.logs import configure_logging
from team_agent.redact import Redactor

SECRET = 'pa"ss w/rd\\é'


def test_text_masks_every_encoding() -> None:
    redactor = Redactor([SECRET])
    for form in (
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        repr(SECRET)[1:-1],
    ):
        assert SECRET not in redactor.text(f"before {form} after")
        assert form not in redactor.text(f"before {form} after")


def test_json_stays_valid_and_masked() -> None:
    redactor = Redactor(["hunter2"])
    text = redactor.json({"password": "hunter2", "list": ["x-hunter2-y"], "hunter2": 1})
    assert "hunter2" not in text
    assert json.loads(text) == {"password": "***", "list": ["x-***-y"], "***": 1}
    assert redactor.json_text("not json hunter2") == "not json ***"


def test_redactor_without_secrets_changes_nothing() -> None:
    assert Redactor([""]).text("anything") == "anything"


def test_log_records_are_masked() -> None:
    redactor = Redactor(["hunter2"])
    stream = io.StringIO()
    handler = configure_logging("info", "json", redactor, stream=stream)
    try:
        log = logging.getLogger("test.redact")
        log.warning("password is %s", "hunter2", extra={"detail": {"pw": "hunter2"}})
        try:
            raise ValueError("boom hunter2")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert "hunter2" not in output
    assert output.count("***") >= 3


def test_every_string_field_of_a_request_is_masked() -> None:
    redactor = Redactor(["hunter2"])
    request = agent_pb.FailTaskRequest(
        agent_id="a",
        attempt_id="hunter2",
        error=common_pb2.TaskError(
            type="X", message="said hunter2", details_json=json.dumps({"stderr": "hunter2\n"})
        ),
    )
    _redact_message(request, redactor)
    assert "hunter2" not in str(request)
    assert json.loads(request.error.details_json) == {"stderr": "***\n"}
    task = agent_pb.Task(trace_context={"k": "hunter2"})
    _redact_message(task, redactor)
    assert dict(task.trace_context) == {"k": "***"}


def test_numbers_equal_to_a_secret_are_data_never_masked() -> None:
    redactor = Redactor(["1234"])
    output = {"amount_cents": 1234, "ratio": 1234.0, "ids": [1234], "note": "pin 1234", "1234": True}
    assert json.loads(redactor.json(output)) == {
        "amount_cents": 1234,
        "ratio": 1234.0,
        "ids": [1234],
        "note": "pin ***",
        "***": True,
    }
    # Serialised JSON whose strings hold no secret is passed on byte for byte...
    text = '{"amount_cents": 1234, "n": 12345}'
    assert redactor.json_text(text) == text
    # ...and one whose strings do is masked per string, staying valid JSON.
    assert json.loads(redactor.json_text('{"n": 1234, "s": "x1234"}')) == {"n": 1234, "s": "x***"}


def test_a_complete_request_keeps_its_numbers() -> None:
    redactor = Redactor(["1234"])
    request = agent_pb.CompleteTaskRequest(attempt_id="a", output_json='{"amount_cents":1234}')
    _redact_message(request, redactor)
    assert request.output_json == '{"amount_cents":1234}'
