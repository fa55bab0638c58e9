"""The one interface every store implements (SQLite by default, PostgreSQL for replicas).

The engine, registry and API only talk to this Protocol and to the records in
``coordinator.store.records``; nothing database-specific leaks past it.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts.model import Deprecation, RetryPolicy, Timeouts
from coordinator.store.records import (
    ActiveState,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    Changes,
    ContractRecord,
    EventRecord,
    RunFilter,
    RunRecord,
    SpanRecord,
    StepRecord,
    TeamRecord,
    WorkflowRecord,
)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    # settings (admin token hash, ...)
    async def get_setting(self, key: str) -> str | None: ...
    async def set_setting(self, key: str, value: str) -> None: ...

    # teams
    async def create_team(self, team: TeamRecord, audit: AuditRecord) -> None:
        """Raises KeyError when the team exists."""

    async def get_team(self, name: str) -> TeamRecord | None: ...
    async def list_teams(self) -> list[TeamRecord]: ...
    async def set_team_token(self, name: str, token_hash: str, audit: AuditRecord) -> None: ...
    async def set_team_defaults(self, name: str, retry: RetryPolicy, timeouts: Timeouts) -> None: ...

    # contracts
    async def add_contract(self, record: ContractRecord, audit: AuditRecord) -> None: ...
    async def contract_versions(self, name: str) -> list[ContractRecord]:
        """Every version of one contract, oldest first."""

    async def list_contracts(self, team: str = "", name_prefix: str = "") -> list[ContractRecord]: ...
    async def set_deprecation(
        self, name: str, versions: list[str], deprecation: Deprecation | None, audit: AuditRecord
    ) -> None: ...

    # workflows
    async def add_workflow(self, record: WorkflowRecord, audit: AuditRecord) -> None: ...
    async def workflow_versions(self, name: str) -> list[WorkflowRecord]:
        """Every version of one workflow, oldest first."""

    async def list_workflows(self, team: str = "") -> list[WorkflowRecord]:
        """Newest version of each workflow."""

    async def consumers_of(self, contract_name: str) -> list[WorkflowRecord]:
        """Newest version of each workflow whose steps call ``contract_name``."""

    # agents
    async def put_agent(self, agent: AgentRecord) -> None: ...
    async def list_agents(self) -> list[AgentRecord]: ...

    # runs
    async def apply(self, changes: Changes) -> None:
        """Write every change in one transaction (durable when this returns)."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...
    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[AttemptRecord]]: ...
    async def find_run(self, workflow: str, caller_team: str, idempotency_key: str) -> RunRecord | None: ...
    async def list_runs(self, query: RunFilter) -> list[RunRecord]: ...
    async def load_active(self) -> ActiveState: ...
    async def get_request(self, scope: str, request_id: str) -> Any | None: ...

    # audit and events
    async def list_audit(self, team: str = "", offset: int = 0, limit: int = 100) -> list[AuditRecord]: ...
    async def add_audit(self, audit: AuditRecord) -> None: ...
    async def list_events(
        self, contract: str = "", offset: int = 0, limit: int = 100
    ) -> list[EventRecord]: ...

    # spans
    async def insert_spans(self, spans: list[SpanRecord]) -> None: ...
    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]: ...
    async def prune_spans(self, before_ns: int) -> int:
        """Delete spans that ended before ``before_ns``; returns how many."""
