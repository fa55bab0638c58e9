"""contracts.jsontext.compact: orjson's speed with the standard library's meaning."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import orjson
import pytest

from contracts.jsontext import compact


@dataclasses.dataclass
class Reading:  # at module level, so that pickle takes it (jsontext._may_hold_non_finite)
    name: str
    value: float
    note: str | None = None


def _standard(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    [
        {"n": 1, "lines": [{"sku": "sku-1", "qty": 2, "price": 12.5, "note": None}]},
        {"text": "é ü 日本 \u2028 \U0001f600", "empty": "", "quote": '"\\/'},
        [0.1, 1e-7, 5e-324, 1e16, -0.0, 1.7976931348623157e308, 2**63, -(2**63), 2**64 - 1],
        {"nested": [[[{"a": [True, False, None]}]]]},
        (1, 2, "tuple"),
        "plain",
        None,
    ],
)
def test_the_text_reads_back_as_the_standard_librarys_does(value: Any) -> None:
    text = compact(value)
    assert json.loads(text) == json.loads(_standard(value))
    # Compact too (UTF-8 rather than \u escapes, floats in their shortest form): never longer.
    assert len(text.encode()) <= len(_standard(value).encode())


@pytest.mark.parametrize(
    "value",
    [
        {"limit": math.inf, "other": None},  # a workflow literal or a schema from YAML can hold it
        [None, [float("nan")]],
        {"deep": [{"x": -math.inf}]},
        2**64,  # beyond orjson's 64 bits
        {1: "int key", None: "none key"},  # keys the standard library turns into strings
        "lone \ud800 surrogate",
        json.loads("[" * 300 + "]" * 300),  # deeper than orjson's 254 levels
    ],
)
def test_what_orjson_would_write_differently_is_written_as_the_standard_library_does(value: Any) -> None:
    assert compact(value) == _standard(value)


def test_a_null_alone_does_not_send_the_value_to_the_standard_library() -> None:
    # The text is orjson's (UTF-8, not \u escapes) when no number is NaN or infinite.
    assert compact({"a": None, "b": "é"}) == '{"a":null,"b":"é"}'


def test_floats_are_found_wherever_they_are_when_the_text_holds_a_null() -> None:
    finite = {"a": None, "r": [Reading("t", 21.5), 1e-300, -2.5e307]}
    assert compact(finite, _asdict) == orjson.dumps(finite).decode()  # orjson's own text
    for bad in (math.nan, math.inf, -math.inf, float("-nan")):
        value = {"a": None, "r": [{"deep": [Reading("t", bad)]}]}
        assert compact(value, _asdict) == json.dumps(value, separators=(",", ":"), default=_asdict)


def test_a_string_that_pickles_like_a_non_finite_float_only_costs_the_slow_path() -> None:
    value = {"a": None, "s": "G\x7f\U0001f600"}
    assert compact(value) == _standard(value)


def _asdict(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(type(value).__name__)


def test_dataclasses_go_through_default_as_before() -> None:
    @dataclasses.dataclass
    class Binding:
        contract: str
        slots: int
        weight: float = 1.5

    def default(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        raise TypeError(type(value).__name__)

    value = [Binding("pay/charge", 4)]
    assert json.loads(compact(value, default)) == [{"contract": "pay/charge", "slots": 4, "weight": 1.5}]
    assert compact([Binding("x", 1, math.nan)], default) == json.dumps(
        [{"contract": "x", "slots": 1, "weight": math.nan}], separators=(",", ":")
    )


def test_a_value_json_cannot_encode_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        compact({"x": object()})
