"""Refused registrations in the audit log: one entry per refusal (who, what, why), within a
budget per actor so that a team sending refused registrations in a loop cannot grow the log as
fast as it sends; the refusals left out are counted in the next entry written. A real registry on
a real SQLite store; the budget's clock is the test's, so nothing here depends on time passing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.errors import FailedPreconditionError, InvalidArgumentError, PermissionDeniedError
from coordinator.principal import Principal
from coordinator.registry.refusals import RefusalBudget
from coordinator.registry.registry import Registry
from coordinator.store.records import AuditRecord
from coordinator.store.sqlite import SqliteStore
from tests.support.scenario import contract

ADMIN = Principal(admin=True)
PAYMENTS = Principal(team="payments")
CRM = Principal(team="crm")
# 1.1.0 requires a field 1.0.0 did not: not compatible with major 1.
BREAKING = contract("payments/charge", "1.1.0", input_required="[order_id, amount]", input_props=(
    "{order_id: {type: string}, amount: {type: integer}}"
))  # fmt: skip
WORKFLOW_OF_UNKNOWN = """
workflow: payments/checkout
input: {type: object}
steps:
  charge:
    contract: payments/nothing@^1
    input: {}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "coordinator.db")
    await store.open()
    yield store
    await store.close()


async def test_each_kind_of_refusal_is_one_entry_saying_who_what_and_why(store: SqliteStore) -> None:
    registry = Registry(store)
    await registry.register_contract(PAYMENTS, contract("payments/charge"), "c.yaml", False)
    with pytest.raises(FailedPreconditionError):
        await registry.register_contract(PAYMENTS, BREAKING, "c.yaml", False)
    with pytest.raises(FailedPreconditionError):  # the same version with other content
        await registry.register_contract(
            PAYMENTS, contract("payments/charge", output_props="{ref: {type: integer}}"), "c.yaml", False
        )
    with pytest.raises(PermissionDeniedError):  # another team's contract
        await registry.register_contract(CRM, contract("payments/refund"), "c.yaml", False)
    with pytest.raises(FailedPreconditionError):  # the admin, on the team's behalf
        await registry.register_contract(ADMIN, BREAKING, "c.yaml", False)
    with pytest.raises(InvalidArgumentError):  # a workflow that does not type-check
        await registry.register_workflow(PAYMENTS, WORKFLOW_OF_UNKNOWN, "w.yaml", False)
    # A dry run only asks; a file that does not parse names no object: neither is an entry.
    checked = await registry.register_contract(PAYMENTS, BREAKING, "c.yaml", True)
    assert not checked.registered
    with pytest.raises(InvalidArgumentError):
        await registry.register_contract(PAYMENTS, "contract: [", "c.yaml", False)

    entries = await store.list_audit()
    assert [(e.action, e.actor, e.object, e.owner_team, e.platform_intervention) for e in entries] == [
        ("contract.register", "payments", "payments/charge@1.0.0", "payments", False),
        ("contract.register.refused", "payments", "payments/charge@1.1.0", "payments", False),
        ("contract.register.refused", "payments", "payments/charge@1.0.0", "payments", False),
        ("contract.register.refused", "crm", "payments/refund@1.0.0", "payments", False),
        ("contract.register.refused", "admin", "payments/charge@1.1.0", "payments", True),
        ("workflow.register.refused", "payments", "payments/checkout", "payments", False),
    ]
    breaking = entries[1].details
    assert "not compatible with major 1" in breaking["reason"]
    assert breaking["problem_count"] >= 1 and "amount" in " ".join(breaking["problems"])
    assert "immutable" in entries[2].details["reason"]
    assert "may register only its own contracts" in entries[3].details["reason"]
    assert "payments/nothing" in " ".join(entries[5].details["problems"])


async def test_a_team_hammering_refused_registrations_gets_a_bounded_number_of_entries(
    store: SqliteStore,
) -> None:
    clock = Clock()
    registry = Registry(store, RefusalBudget(burst=3, every_s=60.0, clock=clock))
    await registry.register_contract(PAYMENTS, contract("payments/charge"), "c.yaml", False)
    for _ in range(50):
        with pytest.raises(FailedPreconditionError):
            await registry.register_contract(PAYMENTS, BREAKING, "c.yaml", False)
    # Another team's budget is its own.
    with pytest.raises(PermissionDeniedError):
        await registry.register_contract(CRM, contract("payments/refund"), "c.yaml", False)

    def refusals_of(actor: str, entries: list[AuditRecord]) -> list[AuditRecord]:
        return [e for e in entries if e.action.endswith(".refused") and e.actor == actor]

    entries = await store.list_audit()
    assert len(refusals_of("payments", entries)) == 3
    assert len(refusals_of("crm", entries)) == 1
    assert not any("not_logged_before" in e.details for e in entries)

    clock.now += 59.0  # not quite one more entry's worth
    with pytest.raises(FailedPreconditionError):
        await registry.register_contract(PAYMENTS, BREAKING, "c.yaml", False)
    assert len(refusals_of("payments", await store.list_audit())) == 3
    clock.now += 1.0
    with pytest.raises(FailedPreconditionError):
        await registry.register_contract(PAYMENTS, BREAKING, "c.yaml", False)
    written = refusals_of("payments", await store.list_audit())
    assert len(written) == 4
    assert written[-1].details["not_logged_before"] == 48  # 47 of the 50, and the one at +59 s
    # The refusal still answers with why, whether or not it was written.
    with pytest.raises(FailedPreconditionError, match="not compatible with major 1"):
        await registry.register_contract(PAYMENTS, BREAKING, "c.yaml", False)


def test_a_budget_refills_to_its_burst_and_no_further() -> None:
    clock = Clock()
    budget = RefusalBudget(burst=2, every_s=10.0, clock=clock)
    assert [budget.admit("payments") for _ in range(3)] == [(True, 0), (True, 0), (False, 0)]
    clock.now += 1000.0  # a long quiet spell refills the burst, not more
    assert [budget.admit("payments") for _ in range(3)] == [(True, 1), (True, 0), (False, 0)]
    with pytest.raises(ValueError, match="burst >= 1"):
        RefusalBudget(burst=0)
