"""The one interface every store implements (SQLite by default, PostgreSQL for replicas).

The engine, registry and API only talk to this Protocol and to the records in
``coordinator.store.records``; nothing database-specific leaks past it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from contracts.model import Deprecation, RetryPolicy, Timeouts
from coordinator.store.records import (
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    Changes,
    ContractRecord,
    EventRecord,
    OfferRecord,
    RunFilter,
    RunRecord,
    RunSnapshot,
    SpanRecord,
    StepRecord,
    TeamRecord,
    TimerRecord,
    WorkflowRecord,
)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    # settings (admin token hash, ...)
    async def get_setting(self, key: str) -> str | None: ...
    async def set_setting(self, key: str, value: str) -> None: ...
    async def set_setting_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is stored there; return the stored value:
        ``value``, or the one another caller (task, connection or process) stored first. Of
        concurrent callers exactly one wins, and every one returns the winner's value."""

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

    # runs: transitions (see ``Changes``: compare-and-swap on the run's version, timers and offers
    # in the same transaction)
    async def apply(self, changes: Changes) -> None:
        """Write every change in one transaction (durable when this returns). Raises
        ``VersionConflict`` or ``IdempotencyConflict`` (then nothing was written)."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...
    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[AttemptRecord]]:
        """A run's steps (by step id) and attempts (by step id, then number), from one
        consistent read; empty lists for an unknown run."""

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        """The run with its steps and attempts (ordered as in ``run_steps``), from one consistent
        read: a transition committed meanwhile is in it whole or not at all. None when the run is
        not stored."""

    async def get_attempt(self, attempt_id: str) -> AttemptRecord | None: ...
    async def find_run(self, workflow: str, caller_team: str, idempotency_key: str) -> RunRecord | None: ...
    async def list_runs(self, query: RunFilter) -> list[RunRecord]: ...
    async def get_request(self, scope: str, request_id: str) -> Any | None: ...

    # timers: due entries claimed by processors
    async def claim_timers(self, now_ms: int, limit: int, claim_ms: int) -> list[TimerRecord]:
        """Up to ``limit`` timers due at ``now_ms`` (``due_ms <= now_ms``; earliest first, then by
        kind and key) that no one has claimed, or whose claim ran out (claimed until
        ``<= now_ms``); each is claimed until ``now_ms + claim_ms``, so concurrent claimers (other
        tasks, connections or processes) never get the same timer while its claim holds. The
        claim is committed before this returns. Firing it (``Changes.timers_fired``) deletes it;
        setting it again (``Changes.timers_set``, ``extend_lease``) drops the claim; an unfired
        claim simply runs out."""

    async def next_timer_due(self) -> int | None:
        """When ``claim_timers`` could next return a timer: the earliest ``due_ms``, or for a
        timer whose claim holds past its due time, the end of that claim. None when there is no
        timer. (A claimed timer does not count as due while its claim holds, or a processor
        whose timer failed to fire would wake again at once until the claim ran out.)"""

    async def extend_lease(self, attempt_id: str, due_ms: int) -> bool:
        """Move the ``lease`` timer of ``attempt_id`` to ``due_ms`` (a heartbeat) and drop any
        claim on it; False when it has none (the attempt ended, or has no heartbeat timeout)."""

    # task offers
    async def offers(self, keys: list[tuple[str, int]], limit: int) -> list[OfferRecord]:
        """Up to ``limit`` open offers for any of ``keys`` ((contract, major)), oldest first."""

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


@runtime_checkable
class ReportsReachability(Protocol):
    """A store whose database can go away while it is open (PostgreSQL; not the SQLite file)."""

    def subscribe_reachability(self, listener: Callable[[bool], None]) -> None:
        """``listener(False)`` when the database is found unreachable, ``listener(True)`` when it
        answers again; called in the event loop, once per change."""
