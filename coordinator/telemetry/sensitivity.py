"""The sensitive values of a run, from what the coordinator knows: its steps' payloads under the
contracts' ``sensitive`` fields, the workflow inputs that flow into a sensitive field of a
callee (the composition checker's ``sensitive_inputs``, kept in the workflow's definition), and
what the run's flows take them into (``Registry.run_flows``: computed for the versions the run
pinned and the event that started it)."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from coordinator.redaction import redact_flows, redact_step_input
from coordinator.store.records import ContractRecord, RunRecord, StepRecord, WorkflowRecord
from coordinator.telemetry.scrub import sensitive_values

logger = logging.getLogger(__name__)


class SensitivityStore(Protocol):
    async def get_run(self, run_id: str, *, payloads: bool = True) -> RunRecord | None: ...
    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[Any]]: ...
    async def contract_versions(self, name: str) -> list[ContractRecord]: ...
    async def workflow_versions(self, name: str) -> list[WorkflowRecord]: ...


class RunSensitivity:
    """Computes a run's sensitive values. Contract sensitive lists and workflow definitions are
    immutable per version, so they are cached; payloads are read fresh (a run's steps grow)."""

    def __init__(
        self,
        store: SensitivityStore,
        *,
        run_cache_size: int = 1024,
        flows: Callable[[RunRecord], Awaitable[tuple[str, ...]]] | None = None,
    ) -> None:
        self._store = store
        # A run's flows (``Registry.run_flows``); without it (a store alone) the flows stored
        # with the workflow version at registration.
        self.flows = flows
        # The run as the engine holds it (``Engine.known_run``), before the store is read.
        self.known_run: Callable[[str], RunRecord | None] | None = None
        # run id -> the run without its payloads: what ``values`` reads of a run to learn whether
        # it can hold a sensitive value at all (its workflow and version, the versions it pinned)
        # never changes, so each agent export need not read it again.
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._run_cache_size = run_cache_size
        self._contract_fields: dict[tuple[str, str], tuple[str, ...]] = {}
        self._workflow_inputs: dict[tuple[str, int], tuple[str, ...]] = {}
        self._workflow_flows: dict[tuple[str, int], tuple[str, ...]] = {}

    async def _sensitive_fields(self, contract: str, version: str) -> tuple[str, ...]:
        key = (contract, version)
        if key not in self._contract_fields:
            fields: tuple[str, ...] = ()
            for record in await self._store.contract_versions(contract):
                if record.contract.version == version:
                    fields = tuple(record.contract.sensitive)
            self._contract_fields[key] = fields
        return self._contract_fields[key]

    async def _sensitive_inputs(self, run: RunRecord) -> tuple[str, ...]:
        key = (run.workflow, run.workflow_version)
        if key not in self._workflow_inputs:
            paths: tuple[str, ...] = ()
            flows: tuple[str, ...] = ()
            for record in await self._store.workflow_versions(run.workflow):
                if record.version == run.workflow_version:
                    try:
                        definition = json.loads(record.definition_json or "{}")
                    except ValueError:
                        definition = {}
                    paths = tuple(definition.get("sensitive_inputs") or ())
                    flows = tuple(definition.get("sensitive_flows") or ())
            self._workflow_inputs[key] = paths
            self._workflow_flows[key] = flows
        return self._workflow_inputs[key]

    async def _run(self, run_id: str) -> RunRecord | None:
        """The run without its payloads (unless the engine holds it)."""
        cached = self._runs.get(run_id)
        if cached is not None:
            self._runs.move_to_end(run_id)
            return cached
        record = self.known_run(run_id) if self.known_run is not None else None
        if record is None:
            # Most runs hold nothing sensitive, and this decides it without their payloads.
            record = await self._store.get_run(run_id, payloads=False)
        if record is not None:
            self._runs[run_id] = replace(record, input=None, output=None, error=None)
            while len(self._runs) > self._run_cache_size:
                self._runs.popitem(last=False)
        return record

    async def _with_payloads(self, run_id: str) -> RunRecord | None:
        record = self.known_run(run_id) if self.known_run is not None else None
        return record if record is not None else await self._store.get_run(run_id)

    async def _may_have_sensitive_steps(self, record: RunRecord) -> bool:
        """Whether a step of ``record`` may hold a value its contract marks sensitive: its steps
        call exactly the contract versions it pinned, unless a retired major is served through a
        migration adapter (then the caller's view of the contract counts: read the steps)."""
        if record.adapted or not record.pinned:
            return True
        for name, version in record.pinned.items():
            if await self._sensitive_fields(name, version):
                return True
        return False

    async def values(self, run: RunRecord | str) -> set[str]:
        """Every sensitive value of ``run`` (a record or a run id; unknown run: none)."""
        record = await self._run(run) if isinstance(run, str) else run
        if record is None:
            return set()
        inputs = await self._sensitive_inputs(record)
        if self.flows is not None:
            flows = await self.flows(record)
        else:
            flows = self._workflow_flows.get((record.workflow, record.workflow_version), ())
        if not inputs and not flows and not await self._may_have_sensitive_steps(record):
            # Nothing in this run can be sensitive: its steps need not be read (most runs; this
            # kept a store read on every agent export, docs/architecture.md "Traces").
            return set()
        if isinstance(run, str):
            full = await self._with_payloads(run)
            if full is None:
                return set()
            record = full
        found = sensitive_values(inputs, input=record.input)
        # What a sensitive value flowed into (taint): a mapped field, a for_each item, text built
        # around it ("card 4111..."), the run output.
        if flows:
            redact_flows(record.input, "input", flows, found)
            redact_flows(record.output, "output", flows, found)
        steps, _ = await self._store.run_steps(record.run_id)
        for step in steps:
            fields = await self._sensitive_fields(step.contract, step.contract_version)
            if fields:
                found |= sensitive_values(fields, input=step.input, output=step.output)
            if flows and step.input is not None:
                redact_step_input(step.step_id, step.input, flows, found)
        return found
