"""contracts.jsontext.compact: orjson's speed with the standard library's meaning."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import math
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.jsontext import compact, loads, plain


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


# ---------- loads and plain ----------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_JSON, st.booleans())
def test_loads_reads_the_value_json_reads(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    expected = json.loads(text)
    read = loads(text)
    # the same types too: an integer beyond 64 bits stays an integer, 1.0 stays a float
    assert repr(read) == repr(expected)


@pytest.mark.parametrize(
    "text",
    [
        "[NaN, Infinity, -Infinity]",
        '["\\ud800", "\\udc00x"]',
        "[1e400, -1e400]",
        "[18446744073709551616, -9223372036854775809, 9223372036854775808]",
        "[0.12345678901234567890123]",
        '{"a": 1, "a": 2}',
        "[" * 1_100 + "]" * 1_100,
    ],
)
def test_loads_reads_what_orjson_would_read_otherwise_as_json_does(text: str) -> None:
    try:
        expected: Any = ("value", repr(json.loads(text)))
    except (ValueError, RecursionError) as exc:
        expected = ("error", type(exc))
    try:
        read: Any = ("value", repr(loads(text)))
    except (ValueError, RecursionError) as exc:
        read = ("error", type(exc))
    assert read == expected


@pytest.mark.parametrize("text", ["", "{", "[1,]", "\ufeff{}", '{"a": 1} x', '["\x01"]'])
def test_loads_refuses_what_json_refuses_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads(text)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@pytest.mark.parametrize(
    "odd",
    [
        Colour.RED,  # orjson writes "red", json with default=str "Colour.RED"
        Level.HIGH,
        uuid.UUID(int=7),
        datetime.date(2026, 12, 7),
        Reading("t", 1.0),
        Name("n"),
        collections.OrderedDict(a=1),
        float("nan"),
        float("-inf"),
        2**64,
        {1, 2},
        b"bytes",
    ],
)
def test_plain_is_none_for_a_value_holding_anything_but_jsons_own_types(odd: Any) -> None:
    for value in (odd, {"deep": [1, {"x": odd}]}, [odd, Colour.RED]):
        assert plain(value) is None


def test_plain_text_reads_back_as_the_value_json_would_write() -> None:
    taken: list[bool] = []

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(_JSON)
    def check(value: Any) -> None:
        text = plain(value)
        taken.append(text is not None)
        if text is not None:
            assert repr(json.loads(text)) == repr(json.loads(json.dumps(value, default=str)))
        else:  # beyond 64 bits, or bytes of a float or a string in the pickle that look like a class
            taken[-1] = _holds_big_integer(value)

    check()
    # None for what orjson cannot write; only rarely (the pickle's bytes) for anything else
    assert sum(taken) > 0.9 * len(taken), f"{sum(taken)} of {len(taken)}"


def _holds_big_integer(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_big_integer(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_big_integer(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64


def test_plain_takes_text_whose_utf8_holds_the_pickle_opcode_of_a_class() -> None:
    value = {"name": "ē" * 50, "quote": "“ē”"}  # C4 93 and E2 80 93: the byte of STACK_GLOBAL
    assert plain(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("before", [0, 300])
def test_plain_finds_a_class_whose_names_the_pickle_already_holds(before: int) -> None:
    # The class's module and name pickled as data first: STACK_GLOBAL then follows two fetches
    # from the memo (BINGET, or LONG_BINGET past 256 entries) rather than two new strings.
    names = [f"s{i}" for i in range(before)] + [Colour.__module__, Colour.__qualname__]
    assert plain([*names, Colour.RED]) is None
    assert plain([*names, "red"]) is not None
