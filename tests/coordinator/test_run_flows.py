"""A run's sensitive flows follow the contract versions it pinned and the event that started it,
not only what was computed when its workflow version was registered (docs/concepts.md,
"Sensitive data follows the data"). Real SQLite store, real registry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.loader import parse_contract_text
from coordinator.registry.registry import Registry
from coordinator.store.records import (
    AuditRecord,
    Changes,
    ContractRecord,
    EventRecord,
    RunRecord,
    WorkflowRecord,
)
from coordinator.store.sqlite import SqliteStore

ISSUE = """\
contract: vault/issue
version: {version}
input: {{type: object}}
output: {{type: object, required: [card_token], properties: {{card_token: {{type: string}}}}}}
{extra}
"""
CHARGE = """\
contract: pay/charge
version: 1.0.0
input: {type: object, properties: {token: {type: string}, note: {type: string}}}
output: {type: object}
"""
ISSUED = """\
contract: vault/card-issued
version: 1.0.0
kind: event
payload: {type: object, required: [card], properties: {card: {type: string}}}
"""
FLOW = """\
workflow: shop/flow
input: {type: object, properties: {card: {type: string}}}
steps:
  issue: {contract: vault/issue@^1, input: {}}
  charge: {contract: pay/charge@^1, input: {token: "${steps.issue.output.card_token}", note: "x ${input.card}"}}
output: {token: "${steps.issue.output.card_token}"}
triggers:
  - on: vault/card-issued@^1
    input: {card: "${event.card}"}
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "coordinator.db")
    await store.open()
    yield store
    await store.close()


async def _contract(store: SqliteStore, text: str) -> None:
    contract = parse_contract_text(text, "c.yaml")
    await store.add_contract(
        ContractRecord(contract, 1, contract.team),
        AuditRecord(1, contract.team, "contract.register", contract.ref, contract.team),
    )


async def _world(store: SqliteStore) -> None:
    """vault/issue 1.0.0 (nothing sensitive) and 1.1.0 (the card marked), and a workflow
    version stored as one registered before Accord kept flows: its definition has none."""
    await _contract(store, ISSUE.format(version="1.0.0", extra=""))
    await _contract(store, ISSUE.format(version="1.1.0", extra="sensitive: [output.card_token]"))
    await _contract(store, CHARGE)
    await _contract(store, ISSUED)
    definition = {"name": "shop/flow", "order": ["issue", "charge"], "dependencies": {}}
    await store.add_workflow(
        WorkflowRecord(
            "shop/flow",
            "shop",
            1,
            "",
            FLOW,
            "flow.yaml",
            json.dumps(definition),
            1,
            "shop",
            ("vault/issue", "pay/charge"),
        ),
        AuditRecord(1, "shop", "workflow.register", "shop/flow v1", "shop"),
    )


def _run(run_id: str, issue: str, **fields: object) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow="shop/flow",
        workflow_version=1,
        team="shop",
        status="succeeded",
        input={},
        created_ms=1,
        trace_id="a" * 32,
        span_id="b" * 16,
        pinned={"vault/issue": issue, "pay/charge": "1.0.0"},
        **fields,  # type: ignore[arg-type]
    )


async def test_a_run_pinning_a_version_that_marks_a_field_sensitive_gets_its_flows(
    store: SqliteStore,
) -> None:
    await _world(store)
    registry = Registry(store)
    assert await registry.sensitive_flows("shop/flow", 1) == ()  # nothing stored
    marked = await registry.run_flows(_run("r1", "1.1.0"))
    assert set(marked) == {"steps.charge.input.token", "output.token"}
    # A run that pinned 1.0.0 (nothing marked) has nothing to redact.
    assert await registry.run_flows(_run("r2", "1.0.0")) == ()
    # Cached per (workflow version, pins): another run with the same pins gets the same flows.
    assert await registry.run_flows(_run("r3", "1.1.0")) == marked


async def test_a_run_an_event_started_takes_the_events_sensitive_fields(store: SqliteStore) -> None:
    await _world(store)
    event = EventRecord(
        "evt-1", "vault/card-issued", "1.0.0", "vault", {"card": "x"}, 1, sensitive=("input.card",)
    )
    plain = EventRecord("evt-2", "vault/card-issued", "1.0.0", "vault", {"card": "y"}, 2)
    await store.apply(Changes(events=[event, plain]))
    registry = Registry(store)
    started = await registry.run_flows(_run("r1", "1.0.0", idempotency_key="event:evt-1"))
    assert set(started) == {"input.card", "steps.charge.input.note"}
    assert await registry.run_flows(_run("r2", "1.0.0", idempotency_key="event:evt-2")) == ()
