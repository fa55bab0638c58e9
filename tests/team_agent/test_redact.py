"""Secret values are masked in every common encoding, in text, JSON, logs and requests."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2
from contracts.jsontext import plain
from team_agent.client import _redact_message
from team_agent.logs import configure_logging
from team_agent.redact import Redactor
from tests.support.soak import sized

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


def _walked(redactor: Redactor, value: Any) -> str:
    """What ``Redactor.json`` always did: walk the value, masking every string, then serialise."""
    return json.dumps(redactor.value(value), separators=(",", ":"), default=str)


class _Odd:
    def __str__(self) -> str:
        return f"odd {SECRET}"


_KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["tok", SECRET, "x" + SECRET, "é", "\U0001f600"]),
    st.integers(-3, 3),
    st.sampled_from([True, False, None, 1.5, ("a", 1)]),
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["tok", SECRET, f"card {SECRET} end", "1234", ",", '"', "\\", "é", _Odd()]),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_KEYS, children, max_size=4),
    ),
    max_leaves=30,
)


@sized("examples", short=500, soak=20_000)
def test_json_is_the_walks_value_whatever_the_value(examples: int) -> None:
    # A value with no secret in it is serialised without the walk: the same value (orjson writes
    # a value of JSON's own types: UTF-8 where json writes \u escapes), for keys that are not
    # strings, secrets in keys, in strings, in what default=str makes, or spelt by numbers and
    # punctuation. A value that is not JSON's own types gets json's text, byte for byte.
    @settings(max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_VALUES, st.sampled_from([(), (SECRET,), ("tok", "1234"), ("1",), (",",), ("é",)]))
    def check(value: Any, secrets: tuple[str, ...]) -> None:
        redactor = Redactor(secrets)
        text, walked = redactor.json(value), _walked(redactor, value)
        assert repr(json.loads(text)) == repr(json.loads(walked))
        if plain(value) is None:
            assert text == walked

    check()


def test_json_of_a_large_value_without_secrets_takes_no_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [{"sku": f"sku-{k:06d}", "qty": k % 7, "price": k * 0.37, "note": None} for k in range(1000)]
    redactor = Redactor(["never-in-it"])
    monkeypatch.setattr(Redactor, "value", lambda self, value: pytest.fail("walked"))
    assert redactor.json({"lines": lines}) == json.dumps({"lines": lines}, separators=(",", ":"))
    # Keys that are not str, or a secret in the text: the walk makes the text.
    for value in ({1: "a"}, {"k": "a never-in-it b"}):
        with pytest.raises(pytest.fail.Exception, match="walked"):
            redactor.json(value)
