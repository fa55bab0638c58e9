"""Checks of large inputs run in worker processes with a time budget (coordinator/checks.py)."""

from __future__ import annotations

import json
import operator
import os
import time
from typing import Any

import pytest

from contracts.compat import check_input_compat
from contracts.errors import AccordError, FailedPreconditionError, FileProblemsError
from contracts.limits import spend_inline
from contracts.loader import parse_contract_text
from coordinator.checks import INLINE_BUDGET_S, INLINE_BYTES, Checks, payload_size
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
