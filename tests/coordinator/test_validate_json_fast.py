"""``validate.json_text`` walks the decoded value only when a look at the text says it could hold
something to refuse (nesting deeper than 64, a lone surrogate, an integer beyond 2^63, a number
too large for a double). Its verdicts must be those of decoding and always walking: the same
values accepted, the same refusals with the same messages. The text tests may say "maybe" for a
text that is fine, never "fine" for one that is not.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from contracts.errors import InvalidArgumentError
from coordinator.api import validate
from coordinator.api.validate import MAX_JSON_DEPTH, MAX_JSON_INT, json_text
from tests.support.soak import sized

DEEP = f"f nests deeper than {MAX_JSON_DEPTH} levels"
SURROGATE = "f holds a lone surrogate (\\ud800-\\udfff), which is not valid UTF-8"
BIG_INT = "f holds an integer beyond ±2^63; send it as a string"
BIG_FLOAT = "f holds a number too large for a double (or NaN/Infinity); send a finite number"


def _reference(raw: str) -> tuple[str, Any]:
    """What ``json_text`` answered when it always walked: decode, then look at every item."""
    if not raw:
        return "accepted", None
    try:
        value = json.loads(raw, parse_constant=validate._refuse_constant)
    except validate._Constant as exc:
        message = f"f holds {exc.args[0]}, which JSON does not allow; send a finite number or a string"
        return "refused", message
    except json.JSONDecodeError as exc:
        return "refused", f"f is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return "refused", DEEP
    except ValueError:
        return "refused", f"f holds an integer too long to read; the limit is {MAX_JSON_INT}"
    try:
        validate.json_value(value, "f")
    except InvalidArgumentError as exc:
        return "refused", str(exc)
    return "accepted", value


def _answer(raw: str) -> tuple[str, Any]:
    try:
        return "accepted", json_text(raw, "f")
    except InvalidArgumentError as exc:
        return "refused", str(exc)


def _problems(value: Any, depth: int = 1) -> set[str]:
    """Every kind of problem the value holds (the walk reports only the first it meets)."""
    if isinstance(value, dict | list):
        found = {"deep"} if depth > MAX_JSON_DEPTH else set()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(key, str) and not _encodable(key):
                found.add("surrogate")
            found |= _problems(child, depth + 1)
        return found
    if isinstance(value, str):
        return set() if _encodable(value) else {"surrogate"}
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, int):
        return set() if -MAX_JSON_INT <= value <= MAX_JSON_INT else {"number"}
    return set() if math.isfinite(value) else {"number"}


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------- texts: JSON, mostly valid, with what each text test must tell apart ----------

# Pieces of strings that hold nothing to refuse, though a careless look at the text might think so.
_FINE_PIECES = [
    "a",
    " ",
    "[",
    "]",
    "{",
    "}",
    "]]]]",
    "[[[[",
    ",",
    ":",
    "0",
    "e400",
    "1e400",
    ",1e400,",
    "E+999",
    "12345678901234567890",
    ",12345678901234567890",
    "123e4567-e89b-12d3-a456-426614174000",
    "\\\\",
    '\\"',
    '\\\\\\"',
    "\\n",
    "\\/",
    "\\u0041",
    "\\u005c",
    "\\u005Cud800",
    "\\ud83d\\ude00",
    "\\uD83D\\uDE00",
    "\\udbff\\udfff",
    "ud800",
    "\\\\ud800",
    "\\\\\\\\ud800",
    "\\\\\\ud83d\\ude00",
    "é",
    "中",
    "😀",
]
# Pieces that make a lone surrogate, as an escape or in the text itself.
_LONE_PIECES = [
    "\\ud800",
    "\\uDBFF",
    "\\udc00",
    "\\uDfFf",
    "\\ud800\\ud800",
    "\\udc00\\ud800",
    "\\ud800\\udc00\\udc00",
    "\\ud800\\u0041",
    "\\udbff\\n",
    "ud83d\\ude00",
    "\\\\\\ud800",
    "\\\\ud83d\\ude00",
    "\\ud83d\\\\\\ude00",
    "\\ud83d\\\\ude00",
    "\ud800",
    "\udc00",
]
_FINE_NUMBERS = st.one_of(
    st.integers(-(10**18) + 1, 10**18 - 1).map(str),
    st.sampled_from(
        ["0", "-0", "12.5", "-3", "999999999999999999", "1e99", "1E-400", "1.7976931348623157e308"]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(
        "{}{}{}".format,
        st.integers(-(10**18), 10**18),
        st.sampled_from(["e", "E", "e+", "E-"]),
        st.integers(0, 99),
    ),
)
# Numbers around the limits: integers near and beyond 2^63, doubles near and beyond the largest.
_EDGE_NUMBERS = st.one_of(
    st.integers(-(2**64), 2**64).map(str),
    st.integers(-(10**25), 10**25).map(str),
    st.integers(-(2**63) - 3, -(2**63) + 3).map(str),
    st.integers(2**63 - 3, 2**63 + 3).map(str),
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1E+400",
            "1e0400",
            "1e-400",
            "1.5e308",
            "1.8e308",
            "17976931348623157e292",
            "17976931348623159e292",
            "123456789012345678.5e99",
            "0.1234567890123456789012",
            "1" + "0" * 400,
        ]
    ),
    st.builds("{}{}{}".format, st.integers(-(10**20), 10**20), st.sampled_from("eE"), st.integers(-500, 500)),
    st.builds("{}e+{:03d}".format, st.integers(1, 99), st.integers(0, 400)),
)


def _strings(pieces: list[str]) -> st.SearchStrategy[str]:
    piece = st.sampled_from(pieces) | st.text(alphabet="ab[]{}0123456789eEu", max_size=3)
    return st.lists(piece, max_size=5).map(lambda parts: '"' + "".join(parts) + '"')


def _values(lone: bool, edge: bool) -> st.SearchStrategy[str]:
    """JSON texts; with ``lone``, strings may hold lone surrogates, with ``edge``, numbers may be
    beyond what the stores hold."""
    strings = _strings(_FINE_PIECES + _LONE_PIECES if lone else _FINE_PIECES)
    numbers = _FINE_NUMBERS | _EDGE_NUMBERS if edge else _FINE_NUMBERS
    scalars = numbers | strings | st.sampled_from(["true", "false", "null"])

    def containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arrays = st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        objects = st.lists(st.tuples(strings, children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{key}:{item}" for key, item in pairs) + "}"
        )
        return arrays | objects

    return st.recursive(scalars, containers, max_leaves=10)


_VALUES = [_values(lone, edge) for lone in (False, True) for edge in (False, True)]
_SPACE = st.text(alphabet=" \t\n\r", max_size=2)


@st.composite
def _texts(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_VALUES).flatmap(lambda values: values))
    # Nested inside arrays and objects to around the limit: the nesting test both ways.
    depth = draw(st.integers(0, MAX_JSON_DEPTH + 4) | st.integers(MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH + 1))
    kinds, key = draw(st.sampled_from(["[", "{", "[{", "{[["])), draw(_strings(_FINE_PIECES))
    for level in range(depth):
        text = "[" + text + "]" if kinds[level % len(kinds)] == "[" else "{" + key + ":" + text + "}"
    # Many brackets that nest shallowly, or sit in strings: more than 64, yet within the limit.
    if draw(st.booleans()):
        filler = draw(st.sampled_from(["[]", "{}", '"[[[["', '"]"', '"\\"[["', '"\\\\"', "[[1]]"]))
        text = "[" + text + ("," + filler) * draw(st.integers(20, 70)) + "]"
    text = draw(_SPACE) + text + draw(_SPACE)
    if draw(st.integers(0, 19)) == 0:  # now and then not JSON at all: the same error either way
        text = text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(["", "NaN", "x", "]"]))
    return text


_SEEN: Counter[tuple[str, bool, bool]] = Counter()


def _check(raw: str) -> None:
    ours, reference = _answer(raw), _reference(raw)
    # repr: the same types too (orjson reads a plain text: an integer must stay an integer)
    assert (ours[0], repr(ours[1])) == (reference[0], repr(reference[1])), raw
    try:
        value = json.loads(raw, parse_constant=validate._refuse_constant)
    except (ValueError, RecursionError):
        return
    # Each text test on its own: it may say "maybe" when the value is fine, never "fine" when not.
    problems = _problems(value)
    data = raw.encode("utf-8", "surrogatepass")
    for name, test in [
        ("deep", validate._may_nest_too_deep),
        ("surrogate", validate._may_hold_lone_surrogate),
        ("number", validate._may_hold_big_number),
    ]:
        maybe = test(data) or (name == "surrogate" and not _encodable(raw))
        assert maybe or name not in problems, (name, raw)
        _SEEN[name, maybe, name in problems] += 1
    _SEEN["plain", validate._plain(raw), bool(problems)] += 1
    # The steps inside the tests, each taken both ways.
    brackets = raw.count("[") + raw.count("{")
    if brackets > MAX_JSON_DEPTH:
        _SEEN["many brackets", validate._may_nest_too_deep(data), "deep" in problems] += 1
        if '\\"' in raw:
            _SEEN["many brackets, escaped quote", validate._may_nest_too_deep(data), "deep" in problems] += 1
    if "\\ud" in raw.lower() and _encodable(raw):
        _SEEN["surrogate escape", validate._may_hold_lone_surrogate(data), "surrogate" in problems] += 1
    if any(char.isdigit() for char in raw):
        _SEEN["digits", validate._may_hold_big_number(data), "number" in problems] += 1


@sized("examples", short=600, soak=20_000)
def test_the_text_tests_give_the_walks_verdicts(examples: int) -> None:
    _SEEN.clear()

    # Derandomized: the coverage checked below is then that of the same examples every run.
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(_texts())
    def check(raw: str) -> None:
        _check(raw)

    check()
    # Every test said "fine" to a fine text (the walk skipped) and "maybe" to a text with its
    # problem (the walk refused), including after the steps that are taken only sometimes.
    for name in ("deep", "surrogate", "number", "many brackets", "surrogate escape", "digits"):
        assert _SEEN[name, False, False] and _SEEN[name, True, True], (name, _SEEN)
    assert _SEEN["plain", True, False] and _SEEN["plain", False, True], _SEEN
    assert _SEEN["many brackets, escaped quote", False, False], _SEEN


# ---------- each refusal, where a wrong text test would let the value through ----------


def _nested(depth: int, inner: str = "1") -> str:
    text = inner
    for level in range(depth):
        text = "[" + text + "]" if level % 2 else '{"k":' + text + "}"
    return text


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        (_nested(64), False),
        (_nested(65), True),
        ("[" * 65 + "]" * 65, True),
        ("[" * 64 + "]" * 64, False),
        ("[" * 63 + ",".join(["[]"] * 200) + "]" * 63, False),  # many brackets, none deeper than 64
        ("[" * 63 + "[[],[],[]]" + "]" * 63, True),
        ('["' + "[" * 200 + '"]', False),  # brackets in a string nest nothing
        ("[" * 65 + '"' + "]" * 70 + '"' + "]" * 65, True),  # closing brackets in a string close nothing
        ("[" * 65 + '"\\"' + "]" * 70 + '"' + "]" * 65, True),  # nor after an escaped quote
        ("[" * 64 + '"\\""' + ",[1]," + '"\\""' + "]" * 64, True),  # escaped quotes end no string
        ("[" * 65 + '"\\\\",' + '"' + "]" * 70 + '"' + "]" * 65, True),  # an escaped backslash, then the end
        ('["\\\\"' + ',"[[[["' * 70 + "]", False),
        ('{"a":"\\\\\\"]]]]]]]]"' + ',"b":' + _nested(64) + "}", True),
    ],
)
def test_nesting(raw: str, refused: bool) -> None:
    assert _answer(raw) == _reference(raw)
    assert _answer(raw) == (("refused", DEEP) if refused else ("accepted", json.loads(raw)))
    assert validate._plain(raw) is not refused


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        ('"\\ud800"', True),
        ('"\\uDBFF"', True),
        ('"\\udc00"', True),
        ('"\\uDFFF"', True),
        ('{"\\ud800": 1}', True),  # in a key
        ('"\\ud800\\ud800"', True),
        ('"\\ud800\\u0041"', True),  # a high half, then another escape
        ('"\\ud800\\ud800\\udc00"', True),  # the second high half has the low one
        ('"\\udc00\\ud800"', True),  # the low half first is no pair
        ('"\\ud800\\udc00\\udc00"', True),
        ('"\\ud83d\\ude00"', False),  # a valid pair: one character
        ('"\\uD83D\\uDE00"', False),
        ('"\\ud83d\\ude00\\ud83d\\ude00"', False),
        ('"\\\\ud800"', False),  # an escaped backslash, then text
        ('"\\\\\\ud800"', True),  # an escaped backslash, then the escape
        ('"\\\\ud83d\\ude00"', True),  # only the low half is an escape
        ('"\\ud83d\\\\\\ude00"', True),  # halves apart, an escaped backslash between them
        ('"\\ud83d\\\\ude00"', True),
        ('"\\u005cud800"', False),  # an escaped backslash, written as an escape
        ('"\ud800"', True),  # a surrogate in the text itself
        ('"\ud83d\ude00"', True),
        ('"é中😀"', False),
    ],
)
def test_lone_surrogates(raw: str, refused: bool) -> None:
    assert _answer(raw) == _reference(raw)
    assert _answer(raw) == (("refused", SURROGATE) if refused else ("accepted", json.loads(raw)))
    assert validate._plain(raw) is not refused


@pytest.mark.parametrize(
    ("raw", "message", "walked"),
    [
        (str(2**63), None, True),  # 19 digits: the walk decides
        (str(2**63 + 1), BIG_INT, True),
        (str(-(2**63)), None, True),
        (f"[{-(2**63) - 1}]", BIG_INT, True),
        ('{"n": 12345678901234567890 }', BIG_INT, True),
        ('{"n":\t-12345678901234567890\n}', BIG_INT, True),
        ("999999999999999999", None, False),
        ('["12345678901234567890", "-12345678901234567890"]', None, False),  # in strings: strings
        ("1e400", BIG_FLOAT, True),  # at the end of the text
        ("[1e400]", BIG_FLOAT, True),
        ('{"x":-1E+400}', BIG_FLOAT, True),
        ("[1e0400 ]", BIG_FLOAT, True),
        ("[17976931348623159e292]", BIG_FLOAT, True),  # rounds beyond the largest double
        ("[1.7976931348623157e308]", None, True),
        ("[1.7976931348623157e99]", None, False),
        ("[1" + "0" * 400 + ".5]", BIG_FLOAT, True),
        ("[1e-400, 0.1234567890123456789012, 123456789012345678.5e99]", None, True),
        ('["1e400", "e+999", "123e4567-e89b-12d3-a456-426614174000"]', None, False),
    ],
)
def test_big_numbers(raw: str, message: str | None, walked: bool) -> None:
    assert _answer(raw) == _reference(raw)
    assert _answer(raw) == (("refused", message) if message else ("accepted", json.loads(raw)))
    assert validate._plain(raw) is not walked


def test_a_large_plain_payload_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    orders = [
        {"sku": f"A-{i}", "qty": i % 7, "price": 12.5, "note": None, "tags": ["x", "y"], "id": "12e456"}
        for i in range(800)
    ]
    raw = json.dumps({"orders": orders, "emoji": "😀", "ascii": json.dumps("😀")})

    def walked(value: Any, field: str) -> None:
        raise AssertionError("walked")

    monkeypatch.setattr(validate, "json_value", walked)
    assert json_text(raw, "f", 1 << 20) == json.loads(raw)


def test_without_the_c_scanner_every_value_is_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "_C_SCANNER", False)
    assert validate._plain('{"n":1}') is False
    assert _answer('{"n":1}') == ("accepted", {"n": 1})
    assert _answer("[1e400]") == ("refused", BIG_FLOAT)
