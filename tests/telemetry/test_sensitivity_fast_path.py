"""A run whose pinned contracts mark nothing sensitive is scrubbed without reading its steps (the
read was on every agent export); a run pinning a contract with a sensitive field still has its
steps read and its values found. Over the real SQLite store, counting the step reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.model import Contract
from coordinator.store.records import (
    AuditRecord,
    Changes,
    ContractRecord,
    RunRecord,
    StepRecord,
)
from coordinator.store.sqlite import SqliteStore
from coordinator.telemetry.sensitivity import RunSensitivity


class CountingStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.step_reads = 0
        self.run_reads: list[bool] = []  # each get_run's ``payloads``

    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[Any]]:
        self.step_reads += 1
        return await super().run_steps(run_id)

    async def get_run(self, run_id: str, *, payloads: bool = True) -> RunRecord | None:
        self.run_reads.append(payloads)
        return await super().get_run(run_id, payloads=payloads)


def _audit() -> AuditRecord:
    return AuditRecord(at_ms=1, actor="admin", action="test", object="x", owner_team="")


async def _run(store: SqliteStore, run_id: str, contract: str, value: str, **extra: Any) -> None:
    run = RunRecord(
        run_id=run_id,
        workflow="shipping/flow",
        workflow_version=1,
        team="shipping",
        status="running",
        input={},
        created_ms=1,
        trace_id=run_id.ljust(32, "0"),
        span_id="a" * 16,
        pinned={contract: "1.0.0"},
        **extra,
    )
    step = StepRecord(
        run_id=run_id,
        step_id="s",
        spec_id="s",
        contract=contract,
        contract_version="1.0.0",
        team="payments",
        status="running",
        idempotency_key=f"{run_id}/s",
        span_id="b" * 16,
        input={"card_token": value},
    )
    await store.apply(Changes(runs=[run], steps=[step]))


async def test_only_runs_that_may_hold_sensitive_values_have_their_steps_read(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "accord.db")
    await store.open()
    try:
        for name, sensitive in (("payments/plain", ()), ("payments/secretive", ("input.card_token",))):
            contract = Contract(
                name=name,
                version="1.0.0",
                input_schema={"type": "object"},
                output_schema={"type": "object"},
                sensitive=sensitive,
            )
            await store.add_contract(ContractRecord(contract, 1, "payments"), _audit())
        await _run(store, "r-plain", "payments/plain", "tok-plain")
        await _run(store, "r-secret", "payments/secretive", "tok-secret")
        # Served through a retired major's migration adapter: the steps are read whatever the
        # pinned version says.
        await _run(store, "r-adapted", "payments/plain", "tok-adapted", adapted={"payments/plain": 0})
        sensitivity = RunSensitivity(store)

        assert await sensitivity.values("r-plain") == set()
        assert store.step_reads == 0

        assert await sensitivity.values("r-secret") == {"tok-secret"}
        assert store.step_reads == 1

        await sensitivity.values("r-adapted")
        assert store.step_reads == 2
    finally:
        await store.close()


async def test_a_run_is_read_without_its_payloads_unless_it_may_hold_a_sensitive_value(
    tmp_path: Path,
) -> None:
    """Whether a run can hold a sensitive value is decided from the run without its payloads
    (read once, then kept); only a run that can has its payloads read, on every export, so a
    value that flowed into its output is found each time."""
    store = CountingStore(tmp_path / "accord.db")
    await store.open()
    try:
        contract = Contract(
            name="payments/plain",
            version="1.0.0",
            input_schema={"type": "object"},
            output_schema={"type": "object"},
        )
        await store.add_contract(ContractRecord(contract, 1, "payments"), _audit())
        await _run(store, "r-plain", "payments/plain", "tok-plain")
        await _run(store, "r-flow", "payments/plain", "tok-flow", output={"card": "4111-flowed"})

        async def flows(record: RunRecord) -> tuple[str, ...]:
            return ("output.card",) if record.run_id == "r-flow" else ()

        sensitivity = RunSensitivity(store, flows=flows)
        for _ in range(2):
            assert await sensitivity.values("r-plain") == set()
        assert store.run_reads == [False]
        for _ in range(2):
            assert await sensitivity.values("r-flow") == {"4111-flowed"}
        assert store.run_reads == [False, False, True, True]
    finally:
        await store.close()
