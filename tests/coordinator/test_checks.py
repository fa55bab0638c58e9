"""Checks of large inputs run in worker processes with a time budget, and large payloads are
validated on the loop first when their schema makes that quick (coordinator/checks.py)."""

from __future__ import annotations

import json
import operator
import os
import time
from typing import Any

import pytest

from contracts.compat import check_input_compat
from contracts.errors import AccordError, FailedPreconditionError, FileProblemsError
from contracts.limits import InlineBudgetSpent, inline_budget, spend_inline
from contracts.loader import parse_contract_text
from contracts.validation import validate_payload
from coordinator import checks as checks_module
from coordinator.checks import (
    INLINE_BUDGET_S,
    INLINE_BYTES,
    LARGE_INLINE_BYTES,
    Checks,
    payload_size,
    validate_large_inline,
)
from tests.contracts.test_limits import alias_bomb

LARGE = INLINE_BYTES + 1


async def test_a_check_over_its_budget_is_stopped_and_the_pool_replaced() -> None:
    checks = Checks(budget_s=0.5)
    try:
        with pytest.raises(FailedPreconditionError, match=r"check budget of 0.5s \(--check-budget\)"):
            await checks.run("sleeping", LARGE, time.sleep, 600)
        # the overrunning worker was killed; fresh ones answer (the budget now covers their start)
        checks.budget_s = 120
        assert await checks.run("adding", LARGE, operator.add, 1, 2) == 3
    finally:
        checks.close()


async def test_errors_come_back_from_a_worker_as_accord_errors() -> None:
    checks = Checks(budget_s=120)
    try:
        with pytest.raises(FileProblemsError) as problems:
            await checks.run("reading bomb.yaml", LARGE, parse_contract_text, alias_bomb(), "bomb.yaml")
        assert problems.value.problems[0].file == "bomb.yaml"
        with pytest.raises(AccordError, match="is not a semantic version"):
            await checks.run("parsing", LARGE, _version_error)
    finally:
        checks.close()


async def test_small_inputs_are_checked_inline_without_a_pool() -> None:
    checks = Checks(budget_s=0.001)
    assert await checks.run("adding", INLINE_BYTES, operator.add, 2, 2) == 4
    assert checks._pool is None


# A pair of small schemas (about 14 KiB together) whose check compares 60 oneOf alternatives
# pairwise: a few hundred milliseconds of CPU, far over the inline budget.
_ALTERNATIVES = [
    {"type": "object", "properties": {"k": {"const": f"v{i}"}, "x": {"type": "integer", "minimum": i}}}
    for i in range(60)
]


def _checked_where(old: Any, new: Any) -> tuple[int, bool]:
    """The process the check ran in, and its verdict."""
    return os.getpid(), check_input_compat(old, new) == []


def _spin(seconds: float) -> int:
    """CPU work that tells the inline budget how it goes, as the checkers do."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        spend_inline()
    return os.getpid()


async def test_a_small_check_over_the_inline_budget_moves_to_a_worker() -> None:
    """A small input is checked inline only within its CPU budget: a compatibility check that
    takes longer is stopped there and made again in a worker (the event loop is held for at
    most about the budget), with the same verdict."""
    checks = Checks(budget_s=120)
    old, new = {"oneOf": _ALTERNATIVES}, {"oneOf": _ALTERNATIVES[:-1]}
    try:
        quick = await checks.run("quick", 100, _checked_where, {"type": "string"}, {"type": "string"})
        assert quick == (os.getpid(), True) and checks.moved == 0 and checks._pool is None
        where, verdict = await checks.run("compatibility", INLINE_BYTES, _checked_where, old, new)
        assert where != os.getpid() and checks.moved == 1
        assert verdict == (check_input_compat(old, new) == [])  # the same answer as inline
        assert await checks.run("spinning", 100, _spin, INLINE_BUDGET_S * 4) != os.getpid()
        assert await checks.run("spinning", 100, _spin, INLINE_BUDGET_S / 10) == os.getpid()
        assert checks.moved == 2
    finally:
        checks.close()


def _version_error() -> None:
    from contracts.versions import parse_version

    parse_version("one")


def test_a_payloads_size_is_its_compact_json_size_whatever_encodes_it() -> None:
    # orjson measures what it can encode; what it refuses (an integer beyond 64 bits, a key that
    # is not a string, nesting past its limit) is measured by json, never sent to a worker blind.
    value = {"lines": [{"sku": f"A-{i}", "qty": i, "note": None} for i in range(100)]}
    assert payload_size(value) == len(json.dumps(value, separators=(",", ":")))
    assert payload_size({"n": 2**70}) == len('{"n":1180591620717411303424}')
    assert payload_size({1: "a"}) == len('{"1":"a"}')
    deep: Any = 0
    for _ in range(300):
        deep = [deep]
    assert payload_size(deep) == 601
    # what neither can encode counts as large: it is checked in a worker
    circular: list[Any] = []
    circular.append(circular)
    assert payload_size(circular) > INLINE_BYTES


# A large payload: an order with about 1,500 lines (~50 KiB), and schemas for it.
_ORDER = {"order_id": "o-1", "lines": [{"sku": f"SKU-{i}", "qty": i % 7, "note": None} for i in range(1_500)]}
_SHALLOW = {"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "string"}}}
_THOROUGH = {
    "type": "object",
    "required": ["order_id", "lines"],
    "properties": {
        "order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            },
        },
    },
}


def _fresh_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a marker of its own: a validator no other test has taught anything."""
    return {**schema, "$comment": f"fresh {time.monotonic_ns()}"}


def test_a_large_payload_with_a_quick_schema_is_validated_inline_with_the_same_answer() -> None:
    size = payload_size(_ORDER)
    assert INLINE_BYTES < size <= LARGE_INLINE_BYTES
    shallow, thorough = _fresh_schema(_SHALLOW), _fresh_schema(_THOROUGH)
    assert validate_large_inline(shallow, _ORDER, "input", size) == []
    bad = {**_ORDER, "order_id": 7}
    assert validate_large_inline(shallow, bad, "input", size) == validate_payload(shallow, bad, "input") != []
    # A schema that looks at every line may take more than the budget on a slow machine: then it
    # answers None (a worker validates it), never another answer.
    verdict = validate_large_inline(thorough, _ORDER, "input", size)
    expected = validate_payload(thorough, _ORDER, "input")
    assert expected[0].path == "$.lines[0].qty"  # qty 0 on a line of seven is below the minimum
    assert verdict is None or verdict == expected


@pytest.mark.parametrize(
    "keyword",
    [
        {"format": "date-time"},
        {"uniqueItems": True},
        {"patternProperties": {"^x": {"type": "string"}}},
        {"unevaluatedProperties": False},
        {"unevaluatedItems": False},
    ],
)
def test_a_schema_with_a_keyword_that_does_not_tick_sends_a_large_payload_to_a_worker(
    keyword: dict[str, Any],
) -> None:
    # anywhere in the schema: here in a $defs entry it refers to
    schema = _fresh_schema(
        {"$defs": {"lines": {"type": "array", **keyword}}, "properties": {"lines": {"$ref": "#/$defs/lines"}}}
    )
    assert validate_large_inline(schema, _ORDER, "input", payload_size(_ORDER)) is None
    # uniqueItems: false asks for nothing
    relaxed = _fresh_schema({"properties": {"lines": {"type": "array", "uniqueItems": False}}})
    assert validate_large_inline(relaxed, _ORDER, "input", payload_size(_ORDER)) == []


def test_a_payload_over_the_large_inline_size_goes_to_a_worker() -> None:
    assert validate_large_inline(_fresh_schema(_SHALLOW), _ORDER, "input", LARGE_INLINE_BYTES + 1) is None


def test_a_schema_that_runs_over_the_budget_sends_payloads_of_that_size_to_a_worker_from_then_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 40 alternatives tried for each of 1,500 lines, each failing late: far over 5 ms of CPU
    alternatives = [
        {"type": "object", "required": ["sku", "qty"], "properties": {"qty": {"const": 1000 + i}}}
        for i in range(40)
    ]
    costly = _fresh_schema({"properties": {"lines": {"type": "array", "items": {"anyOf": alternatives}}}})
    size = payload_size(_ORDER)
    validations: list[int] = []

    def counted(schema: Any, value: Any, what: str = "input") -> Any:
        validations.append(len(json.dumps(value)))
        return validate_payload(schema, value, what)

    monkeypatch.setattr(checks_module, "validate_payload", counted)
    assert validate_large_inline(costly, _ORDER, "input", size) is None
    assert len(validations) == 1  # tried once, stopped by the budget
    # from half that size up, not tried again; smaller payloads still are
    assert validate_large_inline(costly, _ORDER, "input", size) is None
    assert validate_large_inline(costly, _ORDER, "input", size // 2) is None
    assert len(validations) == 1
    small_order = {"order_id": "o-2", "lines": [{"sku": "a", "qty": 1000}]}
    assert validate_large_inline(costly, small_order, "input", size // 2 - 1) == []
    assert len(validations) == 2


async def test_a_large_payload_with_a_quick_schema_starts_no_worker() -> None:
    checks = Checks(budget_s=120)
    try:
        assert await checks.validate("an order", _fresh_schema(_SHALLOW), _ORDER) == []
        assert checks._pool is None
        # one whose schema cannot be tried inline goes to a worker, with the same kind of answer
        unique = _fresh_schema(
            {**_SHALLOW, "properties": {"order_id": {"type": "integer"}}, "uniqueItems": True}
        )
        violations = await checks.validate("an order", unique, _ORDER)
        assert [v.path for v in violations] == ["$.order_id"]
        assert checks._pool is not None
    finally:
        checks.close()


def test_a_check_stopped_by_the_budget_around_it_does_not_mark_its_schema_costly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A transition that starts many steps with large inputs: its own budget bounds them all, and
    # one stopped because that budget ran out says nothing of its schema.
    thorough = _fresh_schema(_THOROUGH)
    size = payload_size(_ORDER)
    validations: list[int] = []

    def counted(schema: Any, value: Any, what: str = "input") -> Any:
        validations.append(1)
        return validate_payload(schema, value, what)

    monkeypatch.setattr(checks_module, "validate_payload", counted)
    with inline_budget(0.002):
        with pytest.raises(InlineBudgetSpent):
            while True:
                spend_inline()
        assert validate_large_inline(thorough, _ORDER, "input", size) is None
    assert len(validations) == 1
    validate_large_inline(thorough, _ORDER, "input", size)  # tried again, not sent straight away
    assert len(validations) == 2
