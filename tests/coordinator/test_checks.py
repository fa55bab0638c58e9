"""Checks of large inputs run in worker processes with a time budget (coordinator/checks.py)."""

from __future__ import annotations

import operator
import time

import pytest

from contracts.errors import AccordError, FailedPreconditionError, FileProblemsError
from contracts.loader import parse_contract_text
from coordinator.checks import INLINE_BYTES, Checks
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


def _version_error() -> None:
    from contracts.versions import parse_version

    parse_version("one")
