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


async def test_checks_run_in_a_worker_whatever_their_size_and_starting_it_is_not_budgeted() -> None:
    """A registration's checks always go to the pool (a 130-byte schema can cost minutes); the
    workers' start (spawning Python, importing the checkers: longer than this budget) is not
    spent from the first check's budget."""
    checks = Checks(budget_s=0.5)
    try:
        assert await checks.check("adding", operator.add, 2, 2) == 4
        assert checks._pool is not None
        with pytest.raises(FailedPreconditionError, match=r"check budget of 0.5s"):
            await checks.check("sleeping", time.sleep, 600)
        assert await checks.check("adding", operator.add, 1, 2) == 3  # fresh workers, not budgeted
    finally:
        checks.close()


async def test_a_small_payload_whose_validation_branches_goes_to_a_worker_within_the_budget() -> None:
    """A few hundred bytes under a schema whose ``anyOf`` doubles the work per level would take
    minutes inline; past the inline step budget it is validated in a worker, and stopped there."""
    from tests.contracts.test_validation import branching

    checks = Checks(budget_s=0.5)
    try:
        schema, value = branching(40)
        with pytest.raises(FailedPreconditionError, match=r"validating the run input.*check budget of 0.5s"):
            await checks.validate("the run input", schema, value)
        small_schema, small_value = branching(3)
        assert await checks.validate("the run input", small_schema, small_value) == []
        unique = {"type": "array", "uniqueItems": True}
        assert await checks.validate("xs", unique, [{"": i} for i in range(1500)]) == []
    finally:
        checks.close()
