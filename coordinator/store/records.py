"""Rows the Store keeps. Plain dataclasses: no database types leak past the Store.

Run, step and attempt records are mutable: the engine owns them in memory while a run is live and
hands changed copies to ``Store.apply`` (one transaction) before acknowledging anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.model import Contract, RetryPolicy, Timeouts

JSON = Any

# Run statuses
RUN_PENDING = "pending"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"
RUN_TERMINAL = frozenset({RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED})

# Step statuses
STEP_PENDING = "pending"
STEP_SCHEDULED = "scheduled"
STEP_RUNNING = "running"
STEP_SUCCEEDED = "succeeded"
STEP_FAILED = "failed"
STEP_SKIPPED = "skipped"
STEP_CANCELLED = "cancelled"
STEP_TERMINAL = frozenset({STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED, STEP_CANCELLED})

# Attempt statuses
ATTEMPT_SCHEDULED = "scheduled"
ATTEMPT_RUNNING = "running"
ATTEMPT_SUCCEEDED = "succeeded"
ATTEMPT_FAILED = "failed"
ATTEMPT_TIMED_OUT = "timed_out"
ATTEMPT_CANCELLED = "cancelled"
ATTEMPT_TERMINAL = frozenset({ATTEMPT_SUCCEEDED, ATTEMPT_FAILED, ATTEMPT_TIMED_OUT, ATTEMPT_CANCELLED})


@dataclass(frozen=True)
class TaskFailure:
    """A failure reported by an agent or produced by the coordinator."""

    type: str
    message: str
    retryable: bool = True
    details_json: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "retryable": self.retryable,
            "details_json": self.details_json,
        }

    @staticmethod
    def from_json(value: dict[str, Any] | None) -> TaskFailure | None:
        if not value:
            return None
        return TaskFailure(
            type=value.get("type", ""),
            message=value.get("message", ""),
            retryable=bool(value.get("retryable", True)),
            details_json=value.get("details_json", ""),
        )


@dataclass(frozen=True)
class TeamRecord:
    name: str
    token_hash: str
    created_ms: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class ContractRecord:
    contract: Contract
    registered_ms: int
    registered_by: str


@dataclass(frozen=True)
class WorkflowRecord:
    name: str
    team: str
    version: int
    description: str
    source_text: str
    source_name: str
    definition_json: str
    registered_ms: int
    registered_by: str
    # Names ("team/name") of the contracts its steps call: the consumer index.
    contracts: tuple[str, ...] = ()


@dataclass
class RunRecord:
    run_id: str
    workflow: str
    workflow_version: int
    team: str  # owner of the workflow
    status: str
    input: JSON
    created_ms: int
    trace_id: str
    span_id: str
    parent_span_id: str = ""
    output: JSON = None
    error: TaskFailure | None = None
    idempotency_key: str = ""
    caller_team: str = ""  # who started it ("" = admin)
    started_by: str = ""
    finished_ms: int = 0
    pinned: dict[str, str] = field(default_factory=dict)  # contract name -> exact version
    involved_teams: tuple[str, ...] = ()
    cancel_requested: bool = False
    cancel_reason: str = ""
    # Whether the run's trace is sampled: decided once when it starts and carried to every hop in
    # the traceparent flags of its tasks; an unsampled run has no spans anywhere.
    sampled: bool = True
    # Span links ({trace_id, span_id}) of the run's span: to the span that published the event
    # that started it. Kept with the run, as its span is emitted only when it ends.
    links: list[dict[str, str]] = field(default_factory=list)


@dataclass
class StepRecord:
    run_id: str
    step_id: str  # "charge", or "notify[3]" for a for_each item
    spec_id: str  # the workflow step it comes from ("notify")
    contract: str
    contract_version: str
    team: str  # owner of the contract
    status: str
    idempotency_key: str
    span_id: str
    item_index: int | None = None  # set on for_each items
    input: JSON = None
    output: JSON = None
    error: TaskFailure | None = None
    attempt_count: int = 0
    next_attempt_ms: int = 0
    started_ms: int = 0
    finished_ms: int = 0
    # Effective policy resolved when the step was created (stays stable across restarts).
    policy: dict[str, Any] = field(default_factory=dict)
    # For a for_each parent: how many items it fanned out to (-1 = not fanned out yet).
    fan_out: int = -1


@dataclass
class AttemptRecord:
    attempt_id: str
    run_id: str
    step_id: str
    number: int
    status: str
    contract: str
    major: int
    span_id: str
    scheduled_ms: int
    agent_id: str = ""
    started_ms: int = 0
    finished_ms: int = 0
    schedule_deadline_ms: int = 0  # 0 = none
    close_deadline_ms: int = 0  # 0 = not started / none
    error: TaskFailure | None = None


@dataclass(frozen=True)
class AuditRecord:
    at_ms: int
    actor: str  # team name or "admin"
    action: str
    object: str
    owner_team: str
    platform_intervention: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True)
class Binding:
    contract: str
    major: int
    engine: str = ""


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    team: str
    bindings: tuple[Binding, ...]
    concurrency: int
    hostname: str = ""
    agent_version: str = ""
    registered_ms: int = 0


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    contract: str
    contract_version: str
    team: str
    payload: JSON
    published_ms: int
    triggered_runs: tuple[str, ...] = ()
    trace_context: dict[str, str] = field(default_factory=dict)


@dataclass
class Changes:
    """Everything one state transition writes, applied in a single transaction."""

    runs: list[RunRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    # (scope, request_id) -> JSON answer, for idempotent RPCs
    requests: dict[tuple[str, str], JSON] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.runs or self.steps or self.attempts or self.audit or self.events or self.requests)


@dataclass(frozen=True)
class RunFilter:
    workflow: str = ""
    status: str = ""
    team: str = ""  # involved team
    visible_to: str = ""  # restrict to runs involving this team ("" = everything)
    created_after_ms: int = 0
    created_before_ms: int = 0
    query: str = ""
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True)
class ActiveState:
    """Every non-terminal run with its steps and attempts: what the engine reloads on start."""

    runs: list[RunRecord]
    steps: list[StepRecord]
    attempts: list[AttemptRecord]


@dataclass(frozen=True)
class SpanRecord:
    """A span the coordinator stores, whoever produced it.

    The engine builds its own run/step/attempt spans from durable run state (a run's span can
    outlive a coordinator restart, which an in-memory SDK span cannot); the telemetry package
    converts spans agents export over OTLP into the same record.
    """

    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str  # "" for a root
    name: str
    start_ns: int
    end_ns: int
    team: str = ""  # producing team; "" for the coordinator itself
    service: str = "accord-coordinator"
    kind: str = "internal"  # internal | server | client | producer | consumer
    status: str = "unset"  # unset | ok | error
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # {name, time_ns, attributes}
    links: list[dict[str, str]] = field(default_factory=list)  # {trace_id, span_id}
    run_id: str = ""  # the run the span belongs to, when known ("accord.run_id" attribute)
