"""The one interface every store implements (SQLite by default, PostgreSQL for replicas).

The engine, registry and API only talk to this Protocol and to the records in
``coordinator.store.records``; nothing database-specific leaks past it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from contracts.model import Deprecation, RetryPolicy, Timeouts
from coordinator.store.records import (
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    CallerCount,
    Changes,
    ContractRecord,
    EventRecord,
    OfferRecord,
    PolicyRecord,
    RunFilter,
    RunPin,
    RunRecord,
    RunSnapshot,
    ScheduleRecord,
    SpanRecord,
    StepRecord,
    TeamRecord,
    TimerRecord,
    TokenRecord,
    UiSessionRecord,
    WorkflowRecord,
)


@dataclass(frozen=True)
class StoreHint:
    """What another process sharing the store committed, as a wake-up hint: it may come late
    or, while the connection that brings hints is down, not at all (then ``everything`` comes
    once it is back). The store, read again, is the truth; a hint only says when to read it.
    See docs/architecture.md, "Several coordinators"."""

    # run id -> the version its transition committed (caches older than that are stale)
    runs: dict[str, int] = field(default_factory=dict)
    # queues ((contract, major)) that were offered tasks -> how many
    queues: dict[tuple[str, int], int] = field(default_factory=dict)
    # the earliest timer armed, in ms since the epoch (None: none)
    timer_due_ms: int | None = None
    # agents another coordinator serves (``hint_presence``): agent id -> its open long polls
    # there (0: busy, seen lately; -1: its poll was cut off, it left)
    agents: dict[str, int] = field(default_factory=dict)
    # a task held by a concurrency limit may go now (``Changes.frees_held``)
    freed: bool = False
    # hints may have been missed: read again whatever is cached or waited for
    everything: bool = False


class Store(Protocol):
    # Called with the seconds each write transaction took, commit included (metrics); it must not
    # raise or block (SQLite calls it on its writer thread).
    on_commit: Callable[[float], None] | None

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    @property
    def shared(self) -> bool:
        """Whether other processes (other coordinators) may write this store while this one
        runs: then what they commit reaches this process through ``subscribe``'s hints and by
        reading again, never by itself."""

    def subscribe(self, on_hint: Callable[[StoreHint], None]) -> None:
        """Call ``on_hint`` (on this event loop, never with a hint of this process's own
        commits) for what other processes commit, from now until ``close``; with
        ``StoreHint(everything=True)`` whenever what they committed may have come with no hint
        (before the store could listen, or while it could not). A store no other process writes
        never calls it."""

    async def hint_presence(self, agents: dict[str, int]) -> None:
        """Tell the other processes sharing the store which agents this one serves (see
        ``StoreHint.agents``): a hint like the others, lossy; the caller repeats it. A store no
        other process writes does nothing."""

    # settings (admin token hash, ...)
    async def get_setting(self, key: str) -> str | None: ...
    async def set_setting(self, key: str, value: str, audit: AuditRecord | None = None) -> None:
        """Store ``value`` under ``key`` (and ``audit``, in the same transaction)."""

    async def set_setting_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is stored there; return the stored value:
        ``value``, or the one another caller (task, connection or process) stored first. Of
        concurrent callers exactly one wins, and every one returns the winner's value."""

    # web UI sign-in sessions (any coordinator on the store serves any session)
    async def create_ui_session(self, session: UiSessionRecord, keep: int) -> None:
        """Store ``session`` (its key is new: a random id's hash) and delete the sessions seen
        least recently (``last_seen_ms``, then ``created_ms``) beyond the newest ``keep``
        (``keep >= 1``; the new session is never one of them), in one transaction."""

    async def get_ui_session(self, key: str) -> UiSessionRecord | None:
        """The session stored under ``key``, expired or not (the caller decides)."""

    async def touch_ui_session(self, key: str, now_ms: int) -> bool:
        """Move the session's ``last_seen_ms`` to ``now_ms`` (never back); False when there
        is no such session."""

    async def delete_ui_session(self, key: str) -> bool:
        """False when there was no such session."""

    async def prune_ui_sessions(self, seen_before_ms: int, created_before_ms: int) -> int:
        """Delete every session last seen before ``seen_before_ms`` or created before
        ``created_before_ms`` (idle too long, or too old); returns how many."""

    # teams and their tokens (only tokens' hashes are stored; see ``TokenRecord``)
    async def create_team(self, team: TeamRecord, token: TokenRecord, audit: AuditRecord) -> None:
        """Create the team with its first token, in one transaction. Raises KeyError when the
        team exists (then nothing was written)."""

    async def get_team(self, name: str) -> TeamRecord | None: ...
    async def list_teams(self) -> list[TeamRecord]: ...
    async def add_token(self, token: TokenRecord, audit: AuditRecord) -> None:
        """Add a token to its (existing) team. Raises KeyError when the team has a live token
        (at ``token.created_ms``) of that name; then nothing was written. Of concurrent adds of
        one name (any connection or process), one wins."""

    async def replace_token(
        self, token: TokenRecord, old_expires_ms: int, audit: AuditRecord
    ) -> list[TokenRecord]:
        """Add ``token``, taking the name of the team's live token(s) of that name (a rotation):
        those are changed as ``records.replaced_tokens`` says (revoked at once, or renamed to
        expire at ``old_expires_ms``), in the same transaction; returns them as changed."""

    async def revoke_token(self, team: str, name: str, at_ms: int, audit: AuditRecord) -> list[TokenRecord]:
        """Revoke (at ``at_ms``) the team's tokens of that name that are not revoked yet, and
        return them as changed; an empty list (and no audit entry written) when there is none."""

    async def list_tokens(self, team: str = "", *, revoked: bool = False) -> list[TokenRecord]:
        """The tokens of ``team`` (of every team when empty), by team, then creation; revoked
        ones only with ``revoked``. Expired ones are listed: the caller decides what is live."""

    async def record_token_use(self, used: dict[str, int]) -> None:
        """Token hash -> when it was used (ms): each token's ``last_used_ms`` becomes the later of
        the stored and the given time (coordinators write it at most every few seconds per
        token, not per call). Unknown hashes are skipped."""

    async def set_team_defaults(
        self, name: str, retry: RetryPolicy, timeouts: Timeouts, audit: AuditRecord | None = None
    ) -> bool:
        """Store a team's retry and timeout defaults; returns whether they changed (False when
        they were stored already, or the team does not exist). ``audit`` is written in the same
        transaction, and only when they changed."""

    # contracts
    async def add_contract(self, record: ContractRecord, audit: AuditRecord) -> None: ...
    async def contract_versions(self, name: str) -> list[ContractRecord]:
        """Every version of one contract, oldest first."""

    async def list_contracts(self, team: str = "", name_prefix: str = "") -> list[ContractRecord]: ...
    async def set_deprecation(
        self, name: str, versions: list[str], deprecation: Deprecation | None, audit: AuditRecord
    ) -> None: ...

    async def retire_contract(self, name: str, versions: list[str], at_ms: int, audit: AuditRecord) -> None:
        """Mark those versions retired at ``at_ms`` (``ContractRecord.retired_ms``), with
        ``audit``, in one transaction. A retired version stays stored."""

    async def contract_callers(self, name: str, since_ms: int) -> list[CallerCount]:
        """Per (workflow, workflow version, calling team, pinned version of ``name``): how many
        runs created at or after ``since_ms`` pinned a version of ``name``; most runs first."""

    async def active_runs_pinning(self, name: str) -> list[RunPin]:
        """Every run that is not finished (not succeeded, failed or cancelled) and pinned a
        version of ``name``, oldest first."""

    # workflows
    async def add_workflow(self, record: WorkflowRecord, audit: AuditRecord) -> None: ...
    async def workflow_versions(self, name: str) -> list[WorkflowRecord]:
        """Every version of one workflow, oldest first."""

    async def list_workflows(self, team: str = "") -> list[WorkflowRecord]:
        """Newest version of each workflow."""

    async def consumers_of(self, contract_name: str) -> list[WorkflowRecord]:
        """The workflow versions whose steps call ``contract_name`` and that are in use: the
        newest version of each workflow, and every older version a run that is not finished
        uses. By workflow name, then version."""

    async def set_workflow_disabled(self, name: str, disabled_ms: int, by: str, audit: AuditRecord) -> None:
        """Disable the workflow from ``disabled_ms`` on (0: enable it again), with ``audit``, in
        one transaction."""

    async def workflow_disabled_ms(self, name: str) -> int:
        """When the workflow was disabled; 0 when it is not."""

    async def delete_workflow_version(self, name: str, version: int, audit: AuditRecord) -> list[str]:
        """Delete that version (and its consumer index rows) with ``audit`` in one transaction,
        unless a stored run references it: then nothing is written and up to 10 of those runs'
        ids are returned. An empty list: deleted (or there was no such version)."""

    # agents
    async def put_agent(self, agent: AgentRecord, audit: AuditRecord | None = None) -> bool:
        """Store an agent's registration (replacing the one with its id); returns whether it is
        new or differs from the stored one in more than ``registered_ms`` (an agent registering
        again unchanged, e.g. after a network blip, is no change). ``audit`` is written in the
        same transaction, and only then. Of concurrent registrations of one new agent id, one
        is new and the others compare against it."""

    async def list_agents(self) -> list[AgentRecord]: ...
    async def in_flight_by_agent(self) -> dict[str, int]:
        """agent id -> how many attempts it is running now (of unfinished runs), for the agents
        page. Agents running nothing are absent."""
        ...

    # runs: transitions (see ``Changes``: compare-and-swap on the run's version, timers and offers
    # in the same transaction)
    async def apply(self, changes: Changes) -> None:
        """Write every change in one transaction (durable when this returns). Raises
        ``VersionConflict`` or ``IdempotencyConflict`` (then nothing was written)."""

    async def get_run(self, run_id: str, *, payloads: bool = True) -> RunRecord | None:
        """The run, or None. ``payloads=False``: without reading its input and output (None
        then, unless its row was written before they had columns of their own), for a reader
        that needs only the rest (codec, "Payloads")."""

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
    async def answer_request(self, scope: str, request_id: str, answer: dict[str, Any]) -> Any:
        """Store ``answer`` (a dict with ``by``, the call that applied the request:
        ``records.RequestMark``) as the request's record, unless the record stored is another
        call's (another ``by``): then nothing is written. Returns the record stored now, ``answer``
        or the other call's. Of concurrent callers with different ``by`` on a request with no
        record, exactly one writes."""

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
    async def offers(
        self,
        keys: list[tuple[str, int]],
        limit: int,
        held_teams: frozenset[str] = frozenset(),
        passing: frozenset[str] = frozenset(),
    ) -> list[OfferRecord]:
        """The oldest ``limit`` offers on ``keys`` ((contract, major)), oldest first, passing by
        those of runs started by a team in ``held_teams`` (at its concurrency limit) and those
        of the attempts in ``passing`` (claims under way here)."""

    async def inflight_counts(self) -> dict[str, int]:
        """How many attempts agents run now for runs started by each team (``Changes.inflight_*``)."""

    async def inflight_of_contracts(self) -> dict[str, int]:
        """How many attempts agents run now of each contract ("team/name")."""

    async def take_start_token(self, team: str, rate: float, burst: float, now_ms: int) -> int:
        """Take one token from ``team``'s start bucket (its start rate, docs/production.md, "Team
        limits"): 0 when one was taken, else how many milliseconds until one will be there
        (nothing taken). The bucket holds at most ``burst`` tokens, starts full, and fills at
        ``rate`` tokens a second from the last time it was asked (``now_ms``; a time before that
        adds nothing). Atomic, as one statement: concurrent takers, through other store objects
        (other coordinators) too, never take the same token."""

    async def event_backlog(self) -> list[tuple[str, int, int]]:
        """Per contract with events the bus has not taken yet (``delivered_ms`` 0): (contract, how
        many, the earliest ``published_ms``), by contract."""

    async def queue_stats(self) -> list[tuple[str, int, int, int]]:
        """Per queue with open offers: (contract, major, how many, the earliest ``offered_ms``),
        by contract and major."""

    # audit and events
    async def list_audit(
        self,
        team: str = "",
        offset: int = 0,
        limit: int = 100,
        *,
        since_ms: int = 0,
        before_id: int = 0,
        newest_first: bool = False,
        until_ms: int = 0,
        action: str = "",
    ) -> list[AuditRecord]:
        """Audit entries in the order they were written (by ``id``; newest first when asked),
        paged by ``offset`` and ``limit``. ``team``: only entries it owns or made (``owner_team``
        or ``actor``); ``since_ms``: only entries at or after that time (``at_ms``);
        ``until_ms``: only entries before that time; ``action``: only entries of that action;
        ``before_id``: only entries written before that one (``id < before_id``: pages newest
        first that entries written meanwhile do not shift)."""

    async def add_audit(self, audit: AuditRecord) -> None: ...
    async def list_overrides(self, team: str = "", since_ms: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """The recorded overrides (audit entries with ``records.OVERRIDE_ACTIONS``: a run's and a
        registration's), oldest first;
        ``team``: only those it made or that concern its objects (as ``list_audit``)."""

    # policies (docs/governance.md)
    async def put_policy(self, policy: PolicyRecord, audit: AuditRecord) -> None:
        """Store ``policy`` as its scope's file (replacing the one it had), with ``audit`` in the
        same transaction."""

    async def list_policies(self) -> list[PolicyRecord]:
        """Every scope's policy file, the platform's ("") first, then by team."""

    async def list_events(
        self, contract: str = "", offset: int = 0, limit: int = 100, *, team: str = ""
    ) -> list[EventRecord]:
        """Events newest first; ``contract``: only of that event contract (team/name);
        ``team``: only of that team's event contracts."""

    async def get_event(self, event_id: str) -> EventRecord | None: ...
    async def undelivered_events(self, published_before_ms: int, limit: int) -> list[EventRecord]:
        """Events the bus has not taken yet (``delivered_ms`` 0) published before
        ``published_before_ms``, oldest first, up to ``limit``."""

    async def mark_event_delivered(self, event_id: str, at_ms: int) -> None:
        """The bus took the event (once set, ``delivered_ms`` does not change)."""

    async def record_event_handled(self, event_id: str, triggered_runs: list[str], at_ms: int) -> None:
        """Its triggers ran and started these runs: ``triggered_runs`` and ``handled_ms`` (the
        first time; the same event handled again after a redelivery names the same runs, as
        their starts are idempotent, and keeps its first ``handled_ms``). Marks it delivered too."""

    # spans
    # ---------- schedules (docs/workflows.md, "Schedules") ----------

    async def sync_schedules(self, workflow: str, schedules: list[ScheduleRecord]) -> None:
        """Make ``workflow``'s schedules these: a new one is added as given; one whose spec
        changed takes the new spec, next due time and state (its pause stays); one whose spec is
        the same is left alone; one not among them is deleted."""

    async def list_schedules(self, workflow: str = "") -> list[ScheduleRecord]:
        """Every schedule (of ``workflow``), by workflow and id."""

    async def claim_schedules(self, now_ms: int, limit: int, claim_ms: int) -> list[ScheduleRecord]:
        """Claim up to ``limit`` schedules that are due at ``now_ms``, not paused and not claimed
        (a claim runs out at ``now_ms + claim_ms``): no two claimers get the same one."""

    async def finish_schedule(self, record: ScheduleRecord, claimed_until_ms: int) -> bool:
        """Write a fired schedule's next due time and state, and drop its claim; False (nothing
        written) when its claim is no longer ``claimed_until_ms`` (it ran out, and another
        claimer took it) or its spec changed meanwhile."""

    async def set_schedule_paused(
        self, workflow: str, schedule_id: str, paused: bool
    ) -> ScheduleRecord | None:
        """Pause or resume a schedule; None when there is no such schedule."""

    async def insert_spans(self, spans: list[SpanRecord]) -> None: ...
    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]: ...
    async def prune_spans(self, before_ns: int, limit: int = 0) -> int:
        """Delete spans that ended before ``before_ns`` (the earliest ``limit`` of them; every one
        when ``limit`` is 0); returns how many."""

    # retention (docs/production.md, "Retention"): each call deletes one small batch, in one
    # transaction, and returns how many it deleted; the caller calls again while that is
    # ``limit`` (coordinator.store.retention).
    async def purge_runs(self, finished_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` runs in a terminal status (``RUN_TERMINAL``) that finished
        before ``finished_before_ms``, the earliest first, with their steps, attempts, request
        records, spans, timers and offers; returns how many runs. Runs still going are never
        touched, however old. Each is folded into its daily aggregate (``list_run_digests``),
        and its start's audit entry (``run.start``, ``run.retry``) goes with it unless the
        admin made it (a platform intervention)."""

    async def purge_events(self, published_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` events published before ``published_before_ms`` whose triggers
        ran (``handled_ms`` set), the earliest first; one still waiting is kept however old."""

    async def purge_requests(self, created_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` request records of no run (those of a run go with it) written
        before ``created_before_ms``."""

    async def purge_audit(self, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` audit entries made before ``before_ms``, the earliest first."""

    async def purge_run_days(self, finished_before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` daily aggregates of deleted runs (``list_run_digests``) whose
        runs all finished before ``finished_before_ms``, the earliest first: they are kept as long
        as the audit log."""

    async def list_run_digests(
        self, created_after_ms: int, offset: int, limit: int, *, newest_first: bool = False
    ) -> list[RunRecord]:
        """What ``purge_runs`` kept of the runs it deleted, for the autonomy report
        (docs/governance.md): each daily aggregate (coordinator/store/run_days.py) as one run, or
        two when it holds more (its earliest creation and end; its latest), with no payloads:
        workflow, version, team, status, times and ``pinned``. Those of runs created at or after
        ``created_after_ms``, oldest first, or newest first when asked."""

    async def reclaim_space(self, max_pages: int) -> int:
        """Give space freed by deletes back to the file system where the database does not do it
        by itself (SQLite's incremental vacuum, up to ``max_pages`` pages); returns how many pages
        were free (0 where there is nothing to do: PostgreSQL)."""


@runtime_checkable
class ReportsReachability(Protocol):
    """A store whose database can go away while it is open (PostgreSQL; not the SQLite file)."""

    def subscribe_reachability(self, listener: Callable[[bool], None]) -> None:
        """``listener(False)`` when the database is found unreachable, ``listener(True)`` when it
        answers again; called in the event loop, once per change."""
