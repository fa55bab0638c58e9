"""Rows the Store keeps. Plain dataclasses: no database types leak past the Store.

Run, step and attempt records are mutable: the engine changes them in one transition and hands
them to ``Store.apply`` (one transaction, compare-and-swap on the run's ``version``) before
acknowledging anything. Timers and task offers are written in that same transaction: everything
that decides what happens next is in the store (see docs/architecture.md, "Durable state").
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import dataclass, field, replace
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
    created_ms: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class UiSessionRecord:
    """A signed-in session of the web UI, shared by every coordinator on the store.

    Nothing here is usable on its own (see ``coordinator/web/_sessions.py``): ``key`` is the
    SHA-256 (hex) of the cookie's random session id, never the id; ``sealed_token`` is the
    signed-in token encrypted under a key derived from that id, which only the browser holds.
    Times are wall-clock unix milliseconds, so expiry holds across processes."""

    key: str
    team: str  # "" for the admin
    admin: bool
    sealed_token: bytes
    csrf: str
    created_ms: int
    last_seen_ms: int


@dataclass(frozen=True)
class TokenRecord:
    """One named token of a team. Only the token's SHA-256 is kept; times are ms since the epoch,
    0 for never (``expires_ms``, ``last_used_ms``) or not revoked (``revoked_ms``).

    A token is *live* until it is revoked or expires; names are unique among a team's live
    tokens (a revoked or expired one keeps its name, and a new token may take it)."""

    team: str
    name: str
    token_hash: str
    created_ms: int
    expires_ms: int = 0
    last_used_ms: int = 0
    revoked_ms: int = 0

    def live_at(self, now_ms: int) -> bool:
        return not self.revoked_ms and (not self.expires_ms or now_ms < self.expires_ms)


def replaced_tokens(live: list[TokenRecord], new: TokenRecord, old_expires_ms: int) -> list[TokenRecord]:
    """What becomes of a team's live tokens named like ``new`` when ``new`` takes their name
    (``Store.replace_token``; ``live``: every live token of the team): each is revoked at once
    when ``old_expires_ms`` is not after ``new.created_ms`` (no grace), else renamed (see
    ``retired_name``) to expire at ``old_expires_ms``, or at its own expiry if that is sooner."""
    now = new.created_ms
    replaced = [t for t in live if t.name == new.name]
    if old_expires_ms <= now:
        return [replace(t, revoked_ms=now) for t in replaced]
    taken = {t.name for t in live}
    changed = []
    for token in replaced:
        name = retired_name(token.name, taken)
        taken.add(name)
        expires = min(old_expires_ms, token.expires_ms) if token.expires_ms else old_expires_ms
        changed.append(replace(token, name=name, expires_ms=expires))
    return changed


def retired_name(name: str, taken: set[str]) -> str:
    """The name a rotated token takes while it lives out its grace period: ``default-old``, or
    ``default-old-2``, ``-3``... when a live token has that name (a second rotation within one
    grace period)."""
    candidate, n = f"{name}-old", 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-old-{n}"
    return candidate


@dataclass(frozen=True)
class ContractRecord:
    contract: Contract
    registered_ms: int
    registered_by: str
    # When the version was retired (``accord contract retire``): it no longer resolves for a new
    # run, but stays readable for the runs that pinned it. 0: in service.
    retired_ms: int = 0


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
    # What the caller should know about the versions it pinned (a deprecation, its sunset and
    # replacement; an override of the sunset), decided when it started: shown by ``runs show``,
    # ``run --wait``, the UI and on the run's span.
    warnings: list[str] = field(default_factory=list)
    # contract name -> the retired major its steps called, served through the migration adapter
    # of the version pinned for it (``pinned``): "payments/charge-card@1 via 2.0.0".
    adapted: dict[str, int] = field(default_factory=dict)
    involved_teams: tuple[str, ...] = ()
    cancel_requested: bool = False
    cancel_reason: str = ""
    # Whether the run's trace is sampled: decided once when it starts and carried to every hop in
    # the traceparent flags of its tasks; an unsampled run has no spans anywhere.
    sampled: bool = True
    # Span links ({trace_id, span_id}) of the run's span: to the span that published the event
    # that started it. Kept with the run, as its span is emitted only when it ends.
    links: list[dict[str, str]] = field(default_factory=list)
    # The run's timeout (unix ms; 0 = none), from the workflow's ``timeout:`` when it started.
    deadline_ms: int = 0
    # Set on a run started by ``accord runs retry``: the run it retries, and the step it retried
    # from ("" = its first failed step).
    retry_of: str = ""
    # Compare-and-swap: the version this record was read at (0 = never stored). ``Store.apply``
    # writes a run only while its stored version still equals this, and then stores version + 1.
    version: int = 0


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
    # A waiting step: what it waits for, in words ("approval by finance"); "" for a step that
    # calls a contract. ``wait_deadline_ms``: when its timeout fires (0 = none armed).
    waiting_for: str = ""
    wait_deadline_ms: int = 0
    # The teams a waiting step names (they answer it, and see its input and output).
    answer_by: list[str] = field(default_factory=list)
    # Set when the step's output was reused from the run this one retries (``accord runs retry``):
    # that run's id. The step did not run again.
    reused_from: str = ""


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
    # The agent's report that ended it, "complete:REQUEST_ID" or "fail:REQUEST_ID": the same
    # report sent again is answered "accepted" from this, without a request row of its own.
    report: str = ""


@dataclass(frozen=True)
class RequestMark:
    """The mark that a mutating RPC with a request id was applied (docs/production.md, "Which
    calls are safe to retry"): stored in the request records (``scope``, ``request_id``) in the
    same transaction as the change, so a retry of the request (perhaps on another coordinator)
    finds it and does not do the work again. ``value`` is the record: a digest of the request and
    ``by``, the id of the one call that applies it (``coordinator.api.once``)."""

    scope: str
    request_id: str
    value: dict[str, Any]

    @property
    def by(self) -> str:
        return str(self.value.get("by", ""))


class RequestConflict(Exception):
    """A store refused a write carrying a ``RequestMark``: another call (a retry of the same
    request, on this coordinator or another) applied that request id first. Nothing was
    written."""

    def __init__(self, mark: RequestMark) -> None:
        super().__init__(f"request {mark.request_id} ({mark.scope}) was applied by another call")
        self.mark = mark


# The mark of the request the current task applies (set by ``coordinator.api.once`` around one
# RPC): every audit entry made meanwhile carries it (``AuditRecord.request``).
_APPLYING: contextvars.ContextVar[RequestMark | None] = contextvars.ContextVar(
    "accord_applying_request", default=None
)


# The calls applying a request now (their ``by``): a task the RPC spawned inherits the context
# variable, and must not mark what it audits once the RPC has answered.
_LIVE: set[str] = set()


def applying_request() -> RequestMark | None:
    """The mark of the request the current task applies, if any (and that call still runs)."""
    mark = _APPLYING.get()
    return mark if mark is not None and mark.by in _LIVE else None


def set_applying_request(mark: RequestMark) -> contextvars.Token[RequestMark | None]:
    """From now until ``reset_applying_request``, audit entries this task makes carry ``mark``."""
    _LIVE.add(mark.by)
    return _APPLYING.set(mark)


def reset_applying_request(token: contextvars.Token[RequestMark | None]) -> None:
    mark = _APPLYING.get()
    if mark is not None:
        _LIVE.discard(mark.by)
    _APPLYING.reset(token)


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
    # The request this entry's change applies (made while an RPC with a request id runs): a
    # store writes it to the request records in the entry's transaction, and refuses the whole
    # transaction (``RequestConflict``) when another call applied that request first. Not a
    # column of the audit log.
    request: RequestMark | None = field(default_factory=applying_request, compare=False, repr=False)


# The audit action of a recorded override (``accord run --override RULE="reason"``, a workflow
# file's ``overrides:``): details hold ``rule``, ``reason``, ``run_id``, ``workflow`` and what
# was overridden. ``Store.list_overrides`` reads them; the autonomy report counts them.
OVERRIDE_ACTION = "run.override"
# The same for a policy rule overridden at registration (``accord contract register
# --override RULE="reason"``, a file's ``overrides:``): details hold ``rule``, ``reason``,
# ``level``, ``source`` ("request" or "file") and the object registered (docs/governance.md).
POLICY_OVERRIDE_ACTION = "policy.override"
OVERRIDE_ACTIONS = (OVERRIDE_ACTION, POLICY_OVERRIDE_ACTION)


@dataclass(frozen=True)
class PolicyRecord:
    """A policy file as applied: ``scope`` "" for the platform's, else the team's own."""

    scope: str
    source_text: str
    source_name: str
    applied_ms: int
    applied_by: str


@dataclass(frozen=True)
class CallerCount:
    """How often one workflow version (of one calling team) started runs pinning one version of
    a contract, since some time (``Store.contract_callers``)."""

    workflow: str
    workflow_version: int
    caller_team: str
    contract_version: str
    runs: int


@dataclass(frozen=True)
class RunPin:
    """A run that is not finished, and the version of one contract it pinned."""

    run_id: str
    workflow: str
    workflow_version: int
    team: str
    contract_version: str


@dataclass(frozen=True)
class Binding:
    contract: str
    major: int
    engine: str = ""
    # The agent's hash of the binding's configuration (no secrets): a change is a binding change.
    fingerprint: str = ""


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    team: str
    bindings: tuple[Binding, ...]
    concurrency: int
    hostname: str = ""
    agent_version: str = ""
    registered_ms: int = 0

    def same_registration(self, other: AgentRecord) -> bool:
        """Whether ``other`` registers the same agent the same way (only the time may differ)."""
        return dataclasses.replace(other, registered_ms=self.registered_ms) == self


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
    # When the event bus took it (0: not yet; a coordinator delivers it later) and when its
    # triggers ran (0: not yet; ``triggered_runs`` is final from then on).
    delivered_ms: int = 0
    handled_ms: int = 0
    # The run whose step published it through its contract's ``emits:`` ("" otherwise).
    source_run: str = ""
    # Payload fields that carry a sensitive value (``input.card``, as an event contract names its
    # own): those its contract marks, and those the emitting step filled from a sensitive value
    # (its contract's sensitive fields, or its input's taint in the run). Decided when it is
    # published; redacted wherever the event is shown, and they taint the runs it starts
    # (docs/concepts.md, "Sensitive data follows the data").
    sensitive: tuple[str, ...] = ()


# Timer kinds: what a due timer asks the engine to do.
TIMER_RETRY = "retry"  # key: "<run id>/<step id>": start the step's next attempt (backoff over)
TIMER_SCHEDULE_TO_START = "schedule_to_start"  # key: attempt id: no agent took it in time
TIMER_START_TO_CLOSE = "start_to_close"  # key: attempt id: it ran too long
TIMER_LEASE = "lease"  # key: attempt id: its agent stopped heartbeating
# key: "<run id>/<step id>": validate the step's large mapped input in a worker, then start it
TIMER_CHECK_INPUT = "check_input"
TIMER_WAIT = "wait"  # key: "<run id>/<step id>": a waiting step's timeout (its on_timeout applies)
TIMER_RUN_TIMEOUT = "run_timeout"  # key: run id: the run's own timeout (it fails with RunTimeout)
TIMER_KINDS = frozenset(
    {
        TIMER_RETRY,
        TIMER_SCHEDULE_TO_START,
        TIMER_START_TO_CLOSE,
        TIMER_LEASE,
        TIMER_CHECK_INPUT,
        TIMER_WAIT,
        TIMER_RUN_TIMEOUT,
    }
)


@dataclass(frozen=True)
class TimerRecord:
    """A durable timer: at ``due_ms`` the engine is asked to act on (``kind``, ``key``).

    One timer per (kind, key): setting it again moves it. Written in the same transaction as the
    transition that arms it; a processor claims due timers (``Store.claim_timers``) and fires
    each in a transition that deletes it (``Changes.timers_fired``)."""

    kind: str
    key: str
    run_id: str
    due_ms: int


@dataclass(frozen=True)
class OfferRecord:
    """A task offered to the agents serving (contract, major): a scheduled attempt no agent has
    claimed yet. Written with the transition that schedules the attempt; removed by the
    transition that claims or ends it."""

    attempt_id: str
    run_id: str
    contract: str
    major: int
    offered_ms: int
    caller_team: str = ""  # the team that started the run ("" = admin): its limits hold it


# The kinds of ``Changes.inflight_caps``: what the limit counts.
INFLIGHT_TEAM = "team"  # the attempts running for runs the team started
INFLIGHT_CONTRACT = "contract"  # the attempts running of the contract (every major)


class LimitReached(Exception):
    """``Store.apply`` refused a transition that would run more attempts than one of its
    ``inflight_caps`` allows (another claim, perhaps through another coordinator, took the last
    slot first). Nothing was written; the task stays offered."""

    def __init__(self, kind: str, key: str, limit: int) -> None:
        super().__init__(f"{kind} {key} already runs {limit} attempt(s), its limit")
        self.kind, self.key, self.limit = kind, key, limit


def wait_for_token(tokens: float, rate: float) -> int:
    """How many milliseconds until a start bucket holding ``tokens`` (fewer than one) has one,
    filling at ``rate`` tokens a second (``Store.take_start_token``); at least 1."""
    return max(1, int((1.0 - tokens) / rate * 1000) + 1)


class VersionConflict(Exception):
    """``Store.apply`` refused a transition: a run changed since it was read (another transition
    won), or a timer it fires was moved or already fired. Nothing was written; the caller reads
    the run again and decides anew."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what

    # The conflicts every store reports, worded once.

    @classmethod
    def stale(cls, run_id: str, read_at: int, stored_at: int | None) -> VersionConflict:
        """A run read at ``read_at`` is stored at ``stored_at`` (None: not stored at all)."""
        if stored_at is None:
            return cls(f"run {run_id} was read at version {read_at} but is not stored")
        return cls(f"run {run_id} was read at version {read_at} but is at version {stored_at}")

    @classmethod
    def run_exists(cls, run_id: str) -> VersionConflict:
        return cls(f"run {run_id} exists: it was written as a new run (its id is not in expect_versions)")

    @classmethod
    def timer_moved(cls, kind: str, key: str, due_ms: int) -> VersionConflict:
        return cls(f"timer {kind} {key} due at {due_ms} was moved or has fired already")


class IdempotencyConflict(Exception):
    """``Store.apply`` refused a new run: a run of the same workflow, caller and idempotency key
    exists (``run_id``). Nothing was written."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"a run with this idempotency key exists: {run_id}")
        self.run_id = run_id


@dataclass
class Changes:
    """Everything one state transition writes, applied in a single transaction.

    Runs: a run whose ``run_id`` is in ``expect_versions`` is an update, written only while its
    stored version still equals that number (else ``VersionConflict``), and stored as that number
    plus one; any other run is new (stored as version 1; an existing run id is a
    ``VersionConflict``, a taken idempotency key an ``IdempotencyConflict``). A run id in
    ``expect_versions`` without a record in ``runs`` (a transition that changed only the run's
    steps, attempts, timers or offers) is checked and moved on the same way, so two transitions
    from one read of a run never both succeed. Each run appears at most once in ``runs``.

    The store reads the records and never changes them: after a successful ``apply`` the caller
    sets ``run.version`` to the expected version plus one (1 for a new run).

    Within the transaction, timers are fired before they are cleared and cleared before they are
    set, and offers removed before they are added: a transition that fires a timer and arms the
    same (kind, key) again leaves the new one.
    """

    runs: list[RunRecord] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    # (scope, request_id) -> JSON answer, for idempotent RPCs
    requests: dict[tuple[str, str], JSON] = field(default_factory=dict)
    # run id -> the version it was read at (compare-and-swap)
    expect_versions: dict[str, int] = field(default_factory=dict)
    # timers armed (or moved) by this transition, by (kind, key)
    timers_set: list[TimerRecord] = field(default_factory=list)
    # timers disarmed by (kind, key); absent ones are ignored
    timers_clear: list[tuple[str, str]] = field(default_factory=list)
    # timers this transition fires: deleted only if still stored with the same due_ms, else the
    # whole transition is a VersionConflict (it was moved, e.g. by a heartbeat, or fired already)
    timers_fired: list[TimerRecord] = field(default_factory=list)
    # tasks offered to agents
    offers_add: list[OfferRecord] = field(default_factory=list)
    # offers withdrawn (claimed, or their attempt ended), by attempt id; absent ones are ignored
    offers_remove: list[str] = field(default_factory=list)
    # attempts an agent now runs: (attempt id, the run's caller team, contract), counted against
    # the caller team's concurrency limit until removed (by attempt id) when they end
    inflight_add: list[tuple[str, str, str]] = field(default_factory=list)
    inflight_remove: list[str] = field(default_factory=list)
    # limits the transaction must leave kept, checked after the inflight rows are written:
    # (INFLIGHT_TEAM, caller team, limit) or (INFLIGHT_CONTRACT, contract, limit), each "at most
    # that many attempts running"; one broken refuses the whole transition (``LimitReached``).
    # Checks of one key are serialised across store objects, so two transactions that each add
    # the last free slot's attempt never both commit.
    inflight_caps: list[tuple[str, str, int]] = field(default_factory=list)
    # a running task of a team or contract with a concurrency limit ends here: other processes
    # sharing the store are told (``StoreHint.freed``), so their polls passing by held offers
    # look again now rather than at their next fallback read
    frees_held: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.inflight_add
            or self.inflight_remove
            or self.runs
            or self.steps
            or self.attempts
            or self.audit
            or self.events
            or self.requests
            or self.timers_set
            or self.timers_clear
            or self.timers_fired
            or self.offers_add
            or self.offers_remove
        )


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


@dataclass
class RunSnapshot:
    """A run with all its steps and attempts, read in one consistent read."""

    run: RunRecord
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


@dataclass
class ScheduleRecord:
    """One schedule of a workflow (docs/workflows.md, "Schedules"): ``spec`` as written in the
    workflow file (cron, timezone, input, overlap, catch_up, max_catch_up), and its state: paused
    or not, the next due time (unix ms), the last due time it started a run for (or skipped), that
    run, and the due times queued behind a run still going (``overlap: queue``)."""

    workflow: str
    schedule_id: str
    spec: dict[str, Any]
    next_due_ms: int
    paused: bool = False
    last_due_ms: int = 0
    last_run_id: str = ""
    queued: list[int] = field(default_factory=list)
    claimed_until_ms: int = 0
