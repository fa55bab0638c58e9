"""Versions registered before unknown schema keywords were refused keep working, and are named
once at start (log) and in ``contract list`` / ``workflow list``; real SQLite store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.loader import parse_contract_text, parse_workflow_text
from coordinator.cli.contract_online import _unknown_keywords, _workflow_unknown_keywords
from coordinator.registry.registry import Registry
from coordinator.store.records import AuditRecord, ContractRecord, WorkflowRecord
from coordinator.store.sqlite import SqliteStore

OLD_TYPO = """\
contract: payments/charge
version: 1.0.0
input: {type: object, requried: [order_id], properties: {order_id: {type: string}}}
output: {type: object, properties: {ref: {type: string, x-ui: hidden}}}
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "coordinator.db")
    await store.open()
    yield store
    await store.close()


async def test_an_old_version_with_a_typo_keeps_working_and_is_logged_at_start(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    contract = parse_contract_text(OLD_TYPO, "charge.yaml", strict=False)
    await store.add_contract(
        ContractRecord(contract, 1, "payments"),
        AuditRecord(1, "payments", "contract.register", contract.ref, "payments"),
    )
    registry = Registry(store)
    with caplog.at_level(logging.WARNING, logger="coordinator.registry.registry"):
        found = await registry.log_unknown_schema_keywords()
    assert found == ["payments/charge@1.0.0 (input.requried)"]
    [record] = [r for r in caplog.records if "JSON Schema does not define" in r.getMessage()]
    assert "payments/charge@1.0.0 (input.requried)" in record.getMessage()
    # It still resolves and validates as before (the validator ignores the keyword).
    assert await registry.contract("payments/charge", "1.0.0") is not None


async def test_nothing_is_logged_without_unknown_keywords(store: SqliteStore) -> None:
    assert await Registry(store).log_unknown_schema_keywords() == []


def test_contract_list_marks_unknown_keywords() -> None:
    c = pb.Contract(
        name="payments/charge",
        version="1.0.0",
        input_schema_json='{"type": "object", "requried": ["a"]}',
        output_schema_json='{"properties": {"ref": {"typ": "string", "x-ui": 1}}}',
    )
    assert _unknown_keywords(c) == ["input.requried", "output.properties.ref.typ"]


OLD_WORKFLOW_TYPO = """\
workflow: payments/refund
input: {type: object, requried: [order_id], properties: {order_id: {type: string, x-ui: hidden}}}
steps:
  approve:
    wait_for: {signal: {name: ok, schema: {type: object, propertes: {by: {type: string}}}}}
  charge: {contract: payments/charge@^1, input: {order_id: "${input.order_id}"}}
"""


async def test_an_old_workflow_with_a_typo_is_logged_at_start_and_marked_in_the_list(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Registered before unknown schema keywords were refused: it still parses as registered.
    parse_workflow_text(OLD_WORKFLOW_TYPO, "refund.yaml", registered=True)
    await store.add_workflow(
        WorkflowRecord(
            "payments/refund", "payments", 1, "", OLD_WORKFLOW_TYPO, "refund.yaml", "{}", 1, "payments", ()
        ),
        AuditRecord(1, "payments", "workflow.register", "payments/refund", "payments"),
    )
    registry = Registry(store)
    with caplog.at_level(logging.WARNING, logger="coordinator.registry.registry"):
        found = await registry.log_unknown_schema_keywords()
    expected = "workflow payments/refund v1 (input.requried, steps.approve.wait_for.signal.schema.propertes)"
    assert found == [expected]
    [record] = [r for r in caplog.records if "workflow version(s)" in r.getMessage()]
    assert expected in record.getMessage()
    listed = pb.Workflow(name="payments/refund", version=1, source_text=OLD_WORKFLOW_TYPO)
    assert _workflow_unknown_keywords(listed) == [
        "input.requried",
        "steps.approve.wait_for.signal.schema.propertes",
    ]
    assert _workflow_unknown_keywords(pb.Workflow(name="a/b", version=1, source_text="workflow: a/b\n")) == []
