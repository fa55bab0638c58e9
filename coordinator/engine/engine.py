"""The run engine: the state machine of runs, steps and attempts.

Every transition happens in memory on the event loop (so it is atomic with respect to other
coroutines), is collected in one ``Changes`` and written to the Store before anything is
acknowledged or handed out: a task is enqueued for agents only after its attempt is durable.
On start the engine reloads every non-terminal run and re-derives its timers from stored
deadlines (retry times, schedule-to-start and start-to-close deadlines; leases get a fresh
heartbeat period, so agents that survived the restart keep their tasks).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import heapq
import itertools
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.errors import (
    AccordError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from contracts.model import Contract, RetryPolicy, Timeouts, Workflow
from contracts.refs import evaluate, evaluate_condition, find_references
from contracts.validation import validate_payload
from contracts.versions import is_name
from coordinator.config import EngineSettings
from coordinator.dispatch import Dispatcher, QueueKey
from coordinator.dispatch.dispatcher import Waiter
from coordinator.engine import spans as span_builders
from coordinator.engine.policy import effective_policy, policy_from_json, policy_to_json
from coordinator.engine.spans import SpanBuffer, SpanSink
from coordinator.principal import Principal
from coordinator.store.base import Store
from coordinator.store.records import (
    ATTEMPT_CANCELLED,
    ATTEMPT_FAILED,
    ATTEMPT_RUNNING,
    ATTEMPT_SCHEDULED,
    ATTEMPT_SUCCEEDED,
    ATTEMPT_TERMINAL,
    ATTEMPT_TIMED_OUT,
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_PENDING,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_TERMINAL,
    STEP_CANCELLED,
    STEP_FAILED,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SCHEDULED,
    STEP_SKIPPED,
    STEP_SUCCEEDED,
    STEP_TERMINAL,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    Changes,
    RunFilter,
    RunRecord,
    StepRecord,
    TaskFailure,
    WorkflowRecord,
)
from coordinator.telemetry.propagation import format_traceparent, parse_traceparent
from coordinator.telemetry.sampling import decide_sampled

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class Registry(Protocol):
    """What the engine needs from the registry."""

    async def newest_workflow(self, name: str) -> WorkflowRecord | None: ...
    def workflow_spec(self, record: WorkflowRecord) -> Workflow: ...
    async def resolve(self, name: str, version_range: str) -> Contract | None: ...
    async def contract(self, name: str, version: str) -> Contract | None: ...


@dataclass
class LiveRun:
    record: RunRecord
    spec: Workflow
    contracts: dict[str, Contract]
    steps: dict[str, StepRecord] = field(default_factory=dict)
    attempts: dict[str, AttemptRecord] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # step id -> current attempt id
    deps: dict[str, list[str]] = field(default_factory=dict)  # spec id -> spec ids it reads


@dataclass
class RunView:
    """A run as a caller sees it (the API layer redacts payloads)."""

    run: RunRecord
    steps: list[StepRecord]
    attempts: dict[str, list[AttemptRecord]]
    waiting: dict[str, str]
    contracts: dict[str, Contract] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    """A task handed to an agent."""

    run: RunRecord
    step: StepRecord
    attempt: AttemptRecord
    timeouts: Timeouts
    trace_context: dict[str, str]


@dataclass(frozen=True)
class HeartbeatAnswer:
    cancel_requested: bool
    lease_lost: bool
    lease_expires_ms: int


class _Batch:
    """Changes of one transition, deduplicated by key, plus what to do once they are durable."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.steps: dict[tuple[str, str], StepRecord] = {}
        self.attempts: dict[str, AttemptRecord] = {}
        self.audit: list[AuditRecord] = []
        self.requests: dict[tuple[str, str], Any] = {}
        self.enqueue: list[AttemptRecord] = []
        self.timers: list[tuple[int, str, str]] = []
        self.touched: set[str] = set()
        self.finished: list[str] = []  # run ids that became terminal

    def run(self, run: RunRecord) -> None:
        self.runs[run.run_id] = run
        self.touched.add(run.run_id)

    def step(self, step: StepRecord) -> None:
        self.steps[(step.run_id, step.step_id)] = step
        self.touched.add(step.run_id)

    def attempt(self, attempt: AttemptRecord) -> None:
        self.attempts[attempt.attempt_id] = attempt
        self.touched.add(attempt.run_id)

    def changes(self) -> Changes:
        return Changes(
            runs=list(self.runs.values()),
            steps=list(self.steps.values()),
            attempts=list(self.attempts.values()),
            audit=self.audit,
            requests=self.requests,
        )


_TIMER_RETRY = "retry"
_TIMER_S2S = "schedule_to_start"
_TIMER_CLOSE = "start_to_close"
_TIMER_LEASE = "lease"


class Engine:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        dispatcher: Dispatcher,
        span_sink: SpanSink,
        settings: EngineSettings,
        *,
        sampling_env: Mapping[str, str] | None = None,
    ) -> None:
        """``sampling_env``: where ``OTEL_TRACES_SAMPLER``/``_ARG`` are read when a run starts
        (default ``os.environ``)."""
        self._store = store
        self._registry = registry
        self._dispatcher = dispatcher
        self._spans = SpanBuffer(span_sink)
        self._settings = settings
        self._sampling_env: Mapping[str, str] = os.environ if sampling_env is None else sampling_env
        self._runs: dict[str, LiveRun] = {}
        self._attempt_runs: dict[str, LiveRun] = {}  # live attempt id -> its run
        self._leases: dict[str, int] = {}  # running attempt id -> lease expiry (ms)
        self._finished_attempts: OrderedDict[str, str] = OrderedDict()  # tombstones: id -> status
        self._team_defaults: dict[str, tuple[RetryPolicy, Timeouts]] = {}
        self._timers: list[tuple[int, int, str, str]] = []
        self._timer_seq = itertools.count()
        self._timer_wake = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._start_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._handed: set[str] = set()  # attempts claimed in a transition's commit for a waiting poll
        self._background: set[asyncio.Task[None]] = set()
        dispatcher.on_lost = self._handoff_lost

    # ================= lifecycle =================

    async def start(self) -> None:
        for team in await self._store.list_teams():
            self._team_defaults[team.name] = (team.retry, team.timeouts)
        for agent in await self._store.list_agents():
            self._dispatcher.register_agent(agent, seen=False)
        # The store has no load_active any more; until the durable-state engine replaces this
        # resume, the live runs are read one by one.
        live_runs = [
            run
            for status in (RUN_PENDING, RUN_RUNNING)
            for run in await self._store.list_runs(RunFilter(status=status, limit=2**62))
        ]
        steps_by_run: dict[str, list[StepRecord]] = {}
        attempts_by_run: dict[str, list[AttemptRecord]] = {}
        for run in live_runs:
            steps_by_run[run.run_id], attempts_by_run[run.run_id] = await self._store.run_steps(run.run_id)
        batch = _Batch()
        for run in live_runs:
            try:
                live = await self._load_live(run, steps_by_run.get(run.run_id, []))
            except Exception as exc:
                logger.exception("cannot resume run %s", run.run_id)
                failure = TaskFailure("ResumeError", f"the run could not be resumed: {exc}", False)
                run.status, run.error, run.finished_ms = RUN_FAILED, failure, now_ms()
                batch.run(run)
                continue
            self._runs[run.run_id] = live
            self._resume(live, attempts_by_run.get(run.run_id, []), batch)
            self._advance(live, batch)
        await self._commit(batch)
        self._spans.start()
        self._timer_task = asyncio.create_task(self._timer_loop(), name="engine-timers")
        logger.info("engine started with %d live runs", len(self._runs))

    async def stop(self) -> None:
        if self._timer_task is not None:
            self._timer_task.cancel()
            try:
                await self._timer_task
            except asyncio.CancelledError:
                pass
        await self._spans.stop()

    async def _load_live(self, run: RunRecord, steps: list[StepRecord]) -> LiveRun:
        versions = await self._registry_workflow_version(run.workflow, run.workflow_version)
        spec = self._registry.workflow_spec(versions)
        contracts: dict[str, Contract] = {}
        for name, version in run.pinned.items():
            contract = await self._registry.contract(name, version)
            if contract is None:
                raise NotFoundError(f"pinned contract {name}@{version} is not registered")
            contracts[name] = contract
        live = LiveRun(run, spec, contracts, deps=_dependencies(spec))
        for step in steps:
            live.steps[step.step_id] = step
        return live

    async def _registry_workflow_version(self, name: str, version: int) -> WorkflowRecord:
        getter = getattr(self._registry, "workflow_version", None)
        record = await getter(name, version) if getter else None
        if record is None:
            raise NotFoundError(f"workflow {name} version {version} is not registered")
        return record  # type: ignore[no-any-return]

    def _resume(self, live: LiveRun, attempts: list[AttemptRecord], batch: _Batch) -> None:
        now = now_ms()
        for attempt in sorted(attempts, key=lambda a: a.number):
            live.attempts[attempt.attempt_id] = attempt
            if attempt.status in ATTEMPT_TERMINAL:
                continue
            live.current[attempt.step_id] = attempt.attempt_id
            self._attempt_runs[attempt.attempt_id] = live
            step = live.steps[attempt.step_id]
            _, timeouts = policy_from_json(step.policy)
            if attempt.status == ATTEMPT_SCHEDULED:
                batch.enqueue.append(attempt)
                if attempt.schedule_deadline_ms:
                    batch.timers.append((attempt.schedule_deadline_ms, _TIMER_S2S, attempt.attempt_id))
            elif attempt.status == ATTEMPT_RUNNING:
                if timeouts.heartbeat:
                    lease = now + int(timeouts.heartbeat * 1000)
                    self._leases[attempt.attempt_id] = lease
                    batch.timers.append((lease, _TIMER_LEASE, attempt.attempt_id))
                if attempt.close_deadline_ms:
                    batch.timers.append((attempt.close_deadline_ms, _TIMER_CLOSE, attempt.attempt_id))
                agent = self._dispatcher.agents.get(attempt.agent_id)
                if agent is not None:
                    agent.in_flight.add(attempt.attempt_id)
        for step in live.steps.values():
            if step.status == STEP_SCHEDULED and step.step_id not in live.current and step.next_attempt_ms:
                batch.timers.append(
                    (step.next_attempt_ms, _TIMER_RETRY, f"{live.record.run_id}\x00{step.step_id}")
                )

    # ================= commit =================

    async def _commit(self, batch: _Batch) -> None:
        # Eager hand-off: a new attempt an agent is already waiting for is claimed for that agent
        # in this same durable commit, and handed to its poll only once the commit is done (so a
        # hop costs one commit, not a commit for the transition and another for the claim).
        handoffs: list[tuple[Waiter, AttemptRecord]] = []
        for attempt in batch.enqueue:
            live = self._attempt_runs.get(attempt.attempt_id)
            if live is None or attempt.status != ATTEMPT_SCHEDULED:
                continue
            waiter = self._dispatcher.reserve((attempt.contract, attempt.major))
            if waiter is not None:
                self._claim_into(live, attempt, waiter.agent_id, batch)
                handoffs.append((waiter, attempt))
        changes = batch.changes()
        if changes:
            try:
                await self._store.apply(changes)
            except BaseException:
                for waiter, _ in handoffs:
                    self._dispatcher.unreserve(waiter)
                raise
        for waiter, attempt in handoffs:
            self._handed.add(attempt.attempt_id)
            if not self._dispatcher.hand(waiter, attempt.attempt_id):
                self._handoff_lost(attempt.attempt_id)
        for attempt in batch.enqueue:
            live = self._attempt_runs.get(attempt.attempt_id)
            if live is not None and attempt.status == ATTEMPT_SCHEDULED:
                self._dispatcher.enqueue((attempt.contract, attempt.major), attempt.attempt_id)
        earliest = self._timers[0][0] if self._timers else None
        for due, kind, key in batch.timers:
            heapq.heappush(self._timers, (due, next(self._timer_seq), kind, key))
        if batch.timers and (earliest is None or self._timers[0][0] < earliest):
            self._timer_wake.set()
        for run_id in batch.touched:
            for event in self._watchers.get(run_id, ()):
                event.set()

    # ================= team defaults and agents =================

    def team_defaults(self, team: str) -> tuple[RetryPolicy, Timeouts]:
        return self._team_defaults.get(team, (RetryPolicy(), Timeouts()))

    async def set_team_defaults(self, team: str, retry: RetryPolicy, timeouts: Timeouts) -> None:
        if self._team_defaults.get(team) != (retry, timeouts):
            await self._store.set_team_defaults(team, retry, timeouts)
            self._team_defaults[team] = (retry, timeouts)

    async def register_agent(
        self, principal: Principal, agent: AgentRecord, retry: RetryPolicy, timeouts: Timeouts
    ) -> list[str]:
        warnings: list[str] = []
        team = agent.team
        self._check_agent_team(principal, agent.agent_id)
        for binding in agent.bindings:
            owner = binding.contract.split("/", 1)[0]
            if owner != team:
                raise PermissionDeniedError(
                    f"contract {binding.contract} is owned by team {owner}; team {team} may serve only its own contracts"
                )
            found = await self._registry.resolve(
                binding.contract, f"^{binding.major}" if binding.major else "*"
            )
            if found is None:
                warnings.append(f"no version of {binding.contract}@{binding.major} is registered yet")
        await self._store.put_agent(agent)
        self._dispatcher.register_agent(agent)
        await self.set_team_defaults(team, retry, timeouts)
        return warnings

    # ================= runs =================

    async def start_run(
        self,
        principal: Principal,
        workflow_name: str,
        run_input: Any,
        *,
        idempotency_key: str = "",
        traceparent: str = "",
        links: list[dict[str, str]] | None = None,
        rerun_of: str = "",
    ) -> tuple[RunView, bool]:
        """Start a run of the newest version of a workflow (or find the one with the same
        idempotency key). ``traceparent`` makes the run's span a child of the caller's span;
        ``links`` (``{trace_id, span_id}``) are span links to what caused it, e.g. an event.
        ``rerun_of``: start it with the stored input of that run (which viewers only ever see
        redacted), of that run's workflow; ``run_input`` is then ignored."""
        if rerun_of:
            original = await self._rerun_source(principal, rerun_of, workflow_name)
            workflow_name, run_input = original.workflow, copy.deepcopy(original.input)
        if not is_name(workflow_name):
            raise InvalidArgumentError(
                f"workflow name '{workflow_name}' must be team/name, e.g. shipping/order-to-cash"
            )
        record = await self._registry.newest_workflow(workflow_name)
        if record is None:
            raise NotFoundError(f"workflow {workflow_name} is not registered")
        if not principal.owns(record.team):
            raise PermissionDeniedError(
                f"workflow {workflow_name} is owned by team {record.team}; only that team may start it"
            )
        caller = principal.actor
        if idempotency_key:
            lock = self._start_locks.setdefault((workflow_name, caller, idempotency_key), asyncio.Lock())
            async with lock:
                existing = await self._store.find_run(workflow_name, caller, idempotency_key)
                if existing is not None:
                    if _canonical(existing.input) != _canonical(run_input):
                        raise InvalidArgumentError(
                            f"idempotency key {idempotency_key} was already used for run "
                            f"{existing.run_id} with a different input"
                        )
                    return await self._view(existing.run_id), False
                view = await self._start(
                    principal, record, run_input, idempotency_key, traceparent, links or []
                )
                return view, True
        return await self._start(principal, record, run_input, "", traceparent, links or []), True

    async def _rerun_source(self, principal: Principal, run_id: str, workflow_name: str) -> RunRecord:
        """The run ``run_id`` to re-run, if ``principal`` may start its workflow."""
        live = self._runs.get(run_id)
        original = live.record if live is not None else await self._store.get_run(run_id)
        if original is None:
            raise NotFoundError(f"run {run_id} does not exist")
        if not principal.owns(original.team):
            raise PermissionDeniedError(
                f"run {run_id} belongs to workflow {original.workflow} of team {original.team}; "
                "only that team may re-run it"
            )
        if workflow_name and workflow_name != original.workflow:
            raise InvalidArgumentError(
                f"run {run_id} is a run of {original.workflow}, not of {workflow_name}"
            )
        return original

    async def _start(
        self,
        principal: Principal,
        record: WorkflowRecord,
        run_input: Any,
        key: str,
        traceparent: str,
        links: list[dict[str, str]],
    ) -> RunView:
        spec = self._registry.workflow_spec(record)
        violations = validate_payload(spec.input_schema, run_input, "run input")
        if violations:
            raise InvalidArgumentError(
                f"the input of {record.name} does not match its schema",
                [str(v) for v in violations],
            )
        contracts: dict[str, Contract] = {}
        for step in spec.steps.values():
            contract = await self._registry.resolve(step.contract, step.version_range)
            if contract is None:
                raise FailedPreconditionError(
                    f"step {step.id}: no registered version of {step.contract} matches {step.version_range}"
                )
            if contract.visibility == "team" and contract.team != record.team:
                raise PermissionDeniedError(
                    f"step {step.id}: {contract.ref} has visibility 'team' and is owned by team "
                    f"{contract.team}; only that team's workflows may call it"
                )
            contracts[step.contract] = contract
        parent = parse_traceparent(traceparent)
        trace_id = parent.trace_id if parent else span_builders.new_trace_id()
        # Sampled or not, once for the whole run: every task carries it in its traceparent flags.
        sampled = decide_sampled(trace_id, parent.flags if parent else None, self._sampling_env)
        run_id = f"run-{time.strftime('%Y%m%d')}-{secrets.token_hex(6)}"
        created = now_ms()
        run = RunRecord(
            run_id=run_id,
            workflow=record.name,
            workflow_version=record.version,
            team=record.team,
            status=RUN_RUNNING,
            input=run_input,
            created_ms=created,
            trace_id=trace_id,
            span_id=span_builders.new_span_id(),
            parent_span_id=parent.span_id if parent else "",
            links=list(links),
            idempotency_key=key,
            caller_team=principal.actor,
            started_by=principal.actor,
            pinned={name: c.version for name, c in contracts.items()},
            involved_teams=tuple(sorted({record.team, *(c.team for c in contracts.values())})),
            sampled=sampled,
        )
        live = LiveRun(run, spec, contracts, deps=_dependencies(spec))
        batch = _Batch()
        for step_spec in spec.steps.values():
            contract = contracts[step_spec.contract]
            retry, timeouts = effective_policy(step_spec, contract, *self.team_defaults(contract.team))
            step_record = StepRecord(
                run_id=run_id,
                step_id=step_spec.id,
                spec_id=step_spec.id,
                contract=contract.name,
                contract_version=contract.version,
                team=contract.team,
                status=STEP_PENDING,
                idempotency_key=f"{run_id}:{step_spec.id}",
                span_id=span_builders.new_span_id(),
                policy=policy_to_json(retry, timeouts),
            )
            live.steps[step_record.step_id] = step_record
            batch.step(step_record)
        batch.run(run)
        batch.audit.append(
            AuditRecord(
                at_ms=created,
                actor=principal.actor,
                action="run.start",
                object=run_id,
                owner_team=record.team,
                platform_intervention=principal.intervenes_on(record.team),
                details={"workflow": record.name, "version": record.version},
            )
        )
        self._runs[run_id] = live
        self._advance(live, batch)
        await self._commit(batch)
        return self._live_view(live)

    async def cancel_run(self, principal: Principal, run_id: str, reason: str) -> RunView:
        live = self._runs.get(run_id)
        if live is None:
            stored = await self._store.get_run(run_id)
            if stored is None:
                raise NotFoundError(f"run {run_id} does not exist")
            if not principal.owns(stored.team):
                raise PermissionDeniedError(
                    f"run {run_id} belongs to workflow {stored.workflow} of team {stored.team}; only that team may cancel it"
                )
            return await self._view(run_id)  # already terminal
        run = live.record
        if not principal.owns(run.team):
            raise PermissionDeniedError(
                f"run {run_id} belongs to workflow {run.workflow} of team {run.team}; only that team may cancel it"
            )
        batch = _Batch()
        run.cancel_requested, run.cancel_reason = True, reason
        message = f"cancelled by {principal.actor}" + (f": {reason}" if reason else "")
        self._finish_run(live, RUN_CANCELLED, TaskFailure("Cancelled", message, False), None, batch)
        batch.audit.append(
            AuditRecord(
                at_ms=now_ms(),
                actor=principal.actor,
                action="run.cancel",
                object=run_id,
                owner_team=run.team,
                platform_intervention=principal.intervenes_on(run.team),
                details={"reason": reason},
            )
        )
        await self._commit(batch)
        return self._live_view(live)

    async def get_run(self, principal: Principal, run_id: str) -> RunView:
        view = await self._view(run_id)
        run = view.run
        if not principal.admin and principal.team not in run.involved_teams:
            raise PermissionDeniedError(
                f"run {run_id} belongs to workflow {run.workflow} of team {run.team}, and team {principal.team} takes no part in it"
            )
        return view

    async def list_runs(self, principal: Principal, query: RunFilter) -> list[RunRecord]:
        if not principal.admin:
            query = RunFilter(**{**query.__dict__, "visible_to": principal.team})
        return await self._store.list_runs(query)

    async def watch(self, principal: Principal, run_id: str) -> AsyncIterator[RunView]:
        """The run now, then again after every change; ends right after yielding it terminal.

        Consume each view before awaiting anything: a live run's view shares the engine's
        records, which later transitions change in place.
        """
        event = asyncio.Event()
        # Listen before the first read: a transition committed while that read awaits the store
        # (e.g. the run's end, written after the run left memory) still wakes this watcher.
        self._watchers.setdefault(run_id, set()).add(event)
        try:
            view = await self.get_run(principal, run_id)
            while True:
                # Decide from the status being yielded, not from view.run after the consumer
                # resumes us: by then the shared record may have turned terminal, and stopping
                # on that would end the stream without ever sending the terminal run.
                terminal = view.run.status in RUN_TERMINAL
                yield view
                if terminal:
                    return
                await event.wait()
                event.clear()
                view = await self._view(run_id)
        finally:
            watchers = self._watchers.get(run_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[run_id]

    async def _view(self, run_id: str) -> RunView:
        live = self._runs.get(run_id)
        if live is not None:
            return self._live_view(live)
        run = await self._store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id} does not exist")
        steps, attempts = await self._store.run_steps(run_id)
        by_step: dict[str, list[AttemptRecord]] = {}
        for attempt in sorted(attempts, key=lambda a: a.number):
            by_step.setdefault(attempt.step_id, []).append(attempt)
        contracts: dict[str, Contract] = {}
        for name, version in run.pinned.items():
            contract = await self._registry.contract(name, version)
            if contract is not None:
                contracts[name] = contract
        return RunView(run, _ordered_steps(steps), by_step, {}, contracts)

    def _live_view(self, live: LiveRun) -> RunView:
        by_step: dict[str, list[AttemptRecord]] = {}
        for attempt in sorted(live.attempts.values(), key=lambda a: a.number):
            by_step.setdefault(attempt.step_id, []).append(attempt)
        waiting = {}
        if live.record.status not in RUN_TERMINAL:
            for step in live.steps.values():
                reason = self._waiting_reason(live, step)
                if reason:
                    waiting[step.step_id] = reason
        return RunView(
            live.record, _ordered_steps(list(live.steps.values())), by_step, waiting, live.contracts
        )

    def _waiting_reason(self, live: LiveRun, step: StepRecord) -> str:
        now = now_ms()
        if step.status == STEP_PENDING:
            if step.item_index is not None:
                spec = live.spec.steps[step.spec_id]
                limit = spec.concurrency or self._settings.default_fan_out
                return f"waiting for a fan-out slot of {step.spec_id} (at most {limit} items at a time)"
            waiting_on = [
                d for d in live.deps.get(step.spec_id, []) if live.steps[d].status not in STEP_TERMINAL
            ]
            if waiting_on:
                return "waiting for step " + ", ".join(waiting_on)
            return "ready to start"
        if step.status != STEP_SCHEDULED:
            return ""
        attempt_id = live.current.get(step.step_id)
        if attempt_id is None:
            seconds = max(0.0, (step.next_attempt_ms - now) / 1000)
            last = step.error
            why = f" after attempt {step.attempt_count} failed ({last.type}: {last.message})" if last else ""
            return f"retrying in {seconds:.1f}s{why}"
        attempt = live.attempts[attempt_id]
        key: QueueKey = (attempt.contract, attempt.major)
        label = f"{step.contract}@{attempt.major}"
        agents = self._dispatcher.serving(key)
        queued = (now - attempt.scheduled_ms) / 1000
        if not agents:
            return f"no agent of team {step.team} is serving {label} (queued for {queued:.0f}s)"
        idle = [a for a in agents if a.polling > 0]
        if idle:
            return f"queued for {queued:.0f}s; being handed to an agent of team {step.team}"
        noun = "agent" if len(agents) == 1 else "agents"
        verb = "is" if len(agents) == 1 else "are"
        return (
            f"queued for {queued:.0f}s; {len(agents)} {noun} of team {step.team} serving {label} {verb} busy"
        )

    # ================= agents' side =================

    def _check_agent(self, principal: Principal, agent_id: str) -> None:
        agent = self._dispatcher.agents.get(agent_id)
        if agent is None:
            raise FailedPreconditionError(f"agent {agent_id} is not registered; call RegisterAgent first")
        if not principal.owns(agent.record.team):
            raise PermissionDeniedError(f"agent {agent_id} belongs to team {agent.record.team}")

    def _check_agent_team(self, principal: Principal, agent_id: str) -> None:
        """Refuse another team's agent id (an unknown one is fine: e.g. not registered again
        since a restart)."""
        agent = self._dispatcher.agents.get(agent_id)
        if agent is not None and not principal.owns(agent.record.team):
            raise PermissionDeniedError(
                f"agent {agent_id} belongs to team {agent.record.team}; team {principal.team} may not act as it"
            )

    async def poll(
        self, principal: Principal, agent_id: str, only: list[QueueKey], wait_s: float
    ) -> Assignment | None:
        self._check_agent(principal, agent_id)
        agent = self._dispatcher.agents[agent_id]
        keys = agent.keys
        if only:
            keys = [k for k in keys if k in only]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            remaining = deadline - loop.time()
            attempt_id = await self._dispatcher.next_attempt(agent_id, keys, max(0.0, remaining))
            if attempt_id is None:
                return None
            assignment = await self._claim(attempt_id, agent_id)
            if assignment is not None:
                return assignment
            if loop.time() >= deadline:
                return None

    async def _claim(self, attempt_id: str, agent_id: str) -> Assignment | None:
        live = self._attempt_runs.get(attempt_id)
        if attempt_id in self._handed:
            # Claimed for this agent in the commit that created it (eager hand-off): durable.
            self._handed.discard(attempt_id)
            if live is None:
                return None
            attempt = live.attempts[attempt_id]
            if attempt.status != ATTEMPT_RUNNING or attempt.agent_id != agent_id:
                return None
            return self._assignment(live, attempt)
        if live is None:
            return None
        attempt = live.attempts[attempt_id]
        if attempt.status != ATTEMPT_SCHEDULED or live.current.get(attempt.step_id) != attempt_id:
            return None
        batch = _Batch()
        self._claim_into(live, attempt, agent_id, batch)
        await self._commit(batch)
        return self._assignment(live, attempt)

    def _claim_into(self, live: LiveRun, attempt: AttemptRecord, agent_id: str, batch: _Batch) -> None:
        """Mark ``attempt`` running on ``agent_id``: durable with ``batch``."""
        attempt_id = attempt.attempt_id
        step = live.steps[attempt.step_id]
        _, timeouts = policy_from_json(step.policy)
        now = now_ms()
        attempt.status, attempt.agent_id, attempt.started_ms = ATTEMPT_RUNNING, agent_id, now
        if timeouts.start_to_close:
            attempt.close_deadline_ms = now + int(timeouts.start_to_close * 1000)
        step.status = STEP_RUNNING
        batch.attempt(attempt)
        batch.step(step)
        if timeouts.heartbeat:
            lease = now + int(timeouts.heartbeat * 1000)
            self._leases[attempt_id] = lease
            batch.timers.append((lease, _TIMER_LEASE, attempt_id))
        if attempt.close_deadline_ms:
            batch.timers.append((attempt.close_deadline_ms, _TIMER_CLOSE, attempt_id))
        agent = self._dispatcher.agents.get(agent_id)
        if agent is not None:
            agent.in_flight.add(attempt_id)

    def _handoff_lost(self, attempt_id: str) -> None:
        """A poll ended before it could answer with the attempt claimed for it: give it back (as
        a release: that attempt ends, a new one is queued), so it does not wait for its lease."""
        self._handed.discard(attempt_id)
        live = self._attempt_runs.get(attempt_id)
        if live is None or live.attempts[attempt_id].status != ATTEMPT_RUNNING:
            return
        task = asyncio.get_running_loop().create_task(self._give_back(live, attempt_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _give_back(self, live: LiveRun, attempt_id: str) -> None:
        attempt = live.attempts[attempt_id]
        if attempt.status != ATTEMPT_RUNNING or self._attempt_runs.get(attempt_id) is not live:
            return
        batch = _Batch()
        error = TaskFailure("Released", f"the poll of agent {attempt.agent_id} ended before it got the task")
        self._end_attempt(live, attempt, ATTEMPT_CANCELLED, error, batch)
        self._new_attempt(live, live.steps[attempt.step_id], batch)
        try:
            await self._commit(batch)
        except Exception:  # the lease timer still recovers it
            logger.exception("giving back attempt %s failed", attempt_id)

    def _assignment(self, live: LiveRun, attempt: AttemptRecord) -> Assignment:
        step = live.steps[attempt.step_id]
        _, timeouts = policy_from_json(step.policy)
        run = live.record
        trace_context = {"traceparent": format_traceparent(run.trace_id, attempt.span_id, run.sampled)}
        return Assignment(live.record, step, attempt, timeouts, trace_context)

    def _owned_attempt(self, principal: Principal, attempt_id: str) -> tuple[LiveRun, AttemptRecord] | None:
        live = self._attempt_runs.get(attempt_id)
        if live is None:
            return None
        attempt = live.attempts[attempt_id]
        team = attempt.contract.split("/", 1)[0]
        if not principal.owns(team):
            raise PermissionDeniedError(
                f"attempt {attempt_id} runs {attempt.contract}, owned by team {team}; only its agents may report on it"
            )
        return live, attempt

    async def _check_foreign_attempt(self, principal: Principal, attempt_id: str) -> None:
        """For an attempt that is not live: refuse if it belongs to another team."""
        run_id = attempt_id.split(":", 1)[0]
        run = self._runs.get(run_id)
        stored = run.record if run else await self._store.get_run(run_id)
        if stored is None:
            return
        parts = attempt_id.split(":")
        step_id = parts[1] if len(parts) >= 3 else ""
        steps, _ = await self._store.run_steps(run_id)
        for step in steps:
            if step.step_id == step_id and not principal.owns(step.team):
                raise PermissionDeniedError(
                    f"attempt {attempt_id} runs {step.contract}, owned by team {step.team}; only its agents may report on it"
                )

    async def heartbeat(self, principal: Principal, agent_id: str, attempt_id: str) -> HeartbeatAnswer:
        self._check_agent_team(principal, agent_id)
        self._dispatcher.touch(agent_id)
        found = self._owned_attempt(principal, attempt_id)
        if found is None:
            await self._check_foreign_attempt(principal, attempt_id)
            status = self._finished_attempts.get(attempt_id)
            if status is None:
                status = await self._stored_attempt_status(attempt_id)
            return HeartbeatAnswer(status == ATTEMPT_CANCELLED, status != ATTEMPT_CANCELLED, 0)
        live, attempt = found
        if attempt.status != ATTEMPT_RUNNING:
            return HeartbeatAnswer(False, True, 0)
        _, timeouts = policy_from_json(live.steps[attempt.step_id].policy)
        lease = now_ms() + int((timeouts.heartbeat or 0) * 1000)
        if timeouts.heartbeat:
            self._leases[attempt_id] = lease
        return HeartbeatAnswer(live.record.cancel_requested, False, lease)

    async def _stored_attempt_status(self, attempt_id: str) -> str:
        run_id = attempt_id.split(":", 1)[0]
        _, attempts = await self._store.run_steps(run_id)
        for attempt in attempts:
            if attempt.attempt_id == attempt_id:
                return attempt.status
        return ""

    async def complete(
        self, principal: Principal, agent_id: str, attempt_id: str, output: Any, request_id: str
    ) -> bool:
        self._check_agent_team(principal, agent_id)
        self._dispatcher.touch(agent_id)
        found = await self._running_attempt(principal, attempt_id)
        if found is None:
            return await self._replayed(("complete", request_id))
        live, attempt = found
        contract = live.contracts[attempt.contract]
        violations = validate_payload(contract.output_schema, output, "output")
        batch = _Batch()
        if violations:
            error = TaskFailure(
                "ContractViolation",
                f"the output of {contract.ref} does not match its schema: "
                + "; ".join(str(v) for v in violations),
                False,
            )
            self._attempt_failed(live, attempt, ATTEMPT_FAILED, error, batch)
        else:
            self._attempt_succeeded(live, attempt, output, batch)
        if request_id:
            batch.requests[("complete", request_id)] = {"accepted": True}
        await self._commit(batch)
        return True

    async def fail(
        self, principal: Principal, agent_id: str, attempt_id: str, error: TaskFailure, request_id: str
    ) -> bool:
        self._check_agent_team(principal, agent_id)
        self._dispatcher.touch(agent_id)
        found = await self._running_attempt(principal, attempt_id)
        if found is None:
            return await self._replayed(("fail", request_id))
        live, attempt = found
        batch = _Batch()
        self._attempt_failed(live, attempt, ATTEMPT_FAILED, error, batch)
        if request_id:
            batch.requests[("fail", request_id)] = {"accepted": True}
        await self._commit(batch)
        return True

    async def release(self, principal: Principal, agent_id: str, attempt_id: str, reason: str) -> bool:
        self._check_agent_team(principal, agent_id)
        found = await self._running_attempt(principal, attempt_id)
        if found is None:
            return False
        live, attempt = found
        batch = _Batch()
        # The agent gave the task back unfinished: a new attempt, offered at once, not a failure.
        error = TaskFailure("Released", f"agent {agent_id} released the task: {reason or 'no reason given'}")
        self._end_attempt(live, attempt, ATTEMPT_CANCELLED, error, batch)
        step = live.steps[attempt.step_id]
        self._new_attempt(live, step, batch)
        await self._commit(batch)
        return True

    async def _running_attempt(
        self, principal: Principal, attempt_id: str
    ) -> tuple[LiveRun, AttemptRecord] | None:
        """The caller's attempt ``attempt_id`` as (live run, attempt) while it is the running one;
        None once it is no longer current. Another team's attempt is refused, naming its owner."""
        found = self._owned_attempt(principal, attempt_id)
        if found is None:
            await self._check_foreign_attempt(principal, attempt_id)
            return None
        return found if found[1].status == ATTEMPT_RUNNING else None

    async def _replayed(self, key: tuple[str, str]) -> bool:
        if not key[1]:
            return False
        answer = await self._store.get_request(*key)
        return bool(answer and answer.get("accepted"))

    # ================= transitions =================

    def _end_attempt(
        self, live: LiveRun, attempt: AttemptRecord, status: str, error: TaskFailure | None, batch: _Batch
    ) -> None:
        attempt.status, attempt.error, attempt.finished_ms = status, error, now_ms()
        batch.attempt(attempt)
        if live.current.get(attempt.step_id) == attempt.attempt_id:
            del live.current[attempt.step_id]
        self._attempt_runs.pop(attempt.attempt_id, None)
        self._leases.pop(attempt.attempt_id, None)
        self._dispatcher.remove(attempt.attempt_id)
        agent = self._dispatcher.agents.get(attempt.agent_id)
        if agent is not None:
            agent.in_flight.discard(attempt.attempt_id)
        self._finished_attempts[attempt.attempt_id] = status
        while len(self._finished_attempts) > 50_000:
            self._finished_attempts.popitem(last=False)
        if live.record.sampled:
            self._spans.add([span_builders.attempt_span(live.record, live.steps[attempt.step_id], attempt)])

    def _attempt_succeeded(self, live: LiveRun, attempt: AttemptRecord, output: Any, batch: _Batch) -> None:
        self._end_attempt(live, attempt, ATTEMPT_SUCCEEDED, None, batch)
        step = live.steps[attempt.step_id]
        step.output, step.error = output, None
        self._finish_step(live, step, STEP_SUCCEEDED, batch)
        self._advance(live, batch)

    def _attempt_failed(
        self, live: LiveRun, attempt: AttemptRecord, status: str, error: TaskFailure, batch: _Batch
    ) -> None:
        self._end_attempt(live, attempt, status, error, batch)
        step = live.steps[attempt.step_id]
        retry, _ = policy_from_json(step.policy)
        retryable = error.retryable and error.type not in retry.non_retryable
        step.error = error
        if retryable and step.attempt_count < (retry.max_attempts or 1):
            delay_ms = int(retry.backoff(step.attempt_count) * 1000)
            if delay_ms <= 0:
                self._new_attempt(live, step, batch)
            else:
                step.status = STEP_SCHEDULED
                step.next_attempt_ms = now_ms() + delay_ms
                batch.step(step)
                batch.timers.append(
                    (step.next_attempt_ms, _TIMER_RETRY, f"{live.record.run_id}\x00{step.step_id}")
                )
            return
        if not retryable:
            why = "not retryable"
        else:
            why = f"gave up after {step.attempt_count} attempt{'s' if step.attempt_count != 1 else ''}"
        self._finish_step(live, step, STEP_FAILED, batch)
        failure = TaskFailure(
            error.type,
            f"step {step.step_id} ({step.contract}@{step.contract_version}) failed, {why}: {error.message}",
            False,
            error.details_json,
        )
        if step.item_index is not None:
            parent = live.steps[step.spec_id]
            parent.error = failure
            self._finish_step(live, parent, STEP_FAILED, batch)
        self._finish_run(live, RUN_FAILED, failure, None, batch)

    def _finish_step(self, live: LiveRun, step: StepRecord, status: str, batch: _Batch) -> None:
        step.status, step.finished_ms, step.next_attempt_ms = status, now_ms(), 0
        if not step.started_ms:
            step.started_ms = step.finished_ms
        batch.step(step)
        parent_span = live.record.span_id
        if step.item_index is not None:
            parent_span = live.steps[step.spec_id].span_id
        if live.record.sampled:
            self._spans.add([span_builders.step_span(live.record, step, parent_span)])

    def _finish_run(
        self, live: LiveRun, status: str, error: TaskFailure | None, output: Any, batch: _Batch
    ) -> None:
        run = live.record
        for step in list(live.steps.values()):
            attempt_id = live.current.get(step.step_id)
            if attempt_id is not None:
                self._end_attempt(live, live.attempts[attempt_id], ATTEMPT_CANCELLED, None, batch)
        for step in live.steps.values():
            if step.status not in STEP_TERMINAL:
                self._finish_step(live, step, STEP_CANCELLED, batch)
        run.status, run.error, run.output, run.finished_ms = status, error, output, now_ms()
        batch.run(run)
        self._runs.pop(run.run_id, None)
        if run.sampled:
            span = span_builders.run_span(run)
            if run.links:
                span = dataclasses.replace(span, links=[dict(link) for link in run.links])
            self._spans.add([span])
        logger.info("run %s %s", run.run_id, status, extra={"trace_id": run.trace_id})

    def _new_attempt(self, live: LiveRun, step: StepRecord, batch: _Batch) -> None:
        contract = live.contracts[step.contract]
        _, timeouts = policy_from_json(step.policy)
        now = now_ms()
        step.attempt_count += 1
        attempt = AttemptRecord(
            attempt_id=f"{live.record.run_id}:{step.step_id}:{step.attempt_count}",
            run_id=live.record.run_id,
            step_id=step.step_id,
            number=step.attempt_count,
            status=ATTEMPT_SCHEDULED,
            contract=contract.name,
            major=contract.major,
            span_id=span_builders.new_span_id(),
            scheduled_ms=now,
        )
        if timeouts.schedule_to_start:
            attempt.schedule_deadline_ms = now + int(timeouts.schedule_to_start * 1000)
            batch.timers.append((attempt.schedule_deadline_ms, _TIMER_S2S, attempt.attempt_id))
        step.status, step.next_attempt_ms = STEP_SCHEDULED, 0
        if not step.started_ms:
            step.started_ms = now
        live.attempts[attempt.attempt_id] = attempt
        live.current[step.step_id] = attempt.attempt_id
        self._attempt_runs[attempt.attempt_id] = live
        batch.step(step)
        batch.attempt(attempt)
        batch.enqueue.append(attempt)

    def _fail_mapping(self, live: LiveRun, step: StepRecord, error: TaskFailure, batch: _Batch) -> None:
        step.error = error
        self._finish_step(live, step, STEP_FAILED, batch)
        self._finish_run(
            live,
            RUN_FAILED,
            TaskFailure(error.type, f"step {step.step_id}: {error.message}", False),
            None,
            batch,
        )

    def _scope(self, live: LiveRun) -> dict[str, Any]:
        steps = {
            spec_id: {"output": live.steps[spec_id].output}
            for spec_id in live.spec.steps
            if live.steps[spec_id].status in (STEP_SUCCEEDED, STEP_SKIPPED)
        }
        return {"input": live.record.input, "steps": steps}

    def _start_step(self, live: LiveRun, step: StepRecord, step_input: Any, batch: _Batch) -> bool:
        """Validate the mapped input and schedule the first attempt; False when the run failed."""
        contract = live.contracts[step.contract]
        violations = validate_payload(contract.input_schema, step_input, "input")
        step.input = step_input
        if violations:
            error = TaskFailure(
                "ContractViolation",
                f"the mapped input does not match {contract.ref}: " + "; ".join(str(v) for v in violations),
                False,
            )
            self._fail_mapping(live, step, error, batch)
            return False
        self._new_attempt(live, step, batch)
        return True

    def _advance(self, live: LiveRun, batch: _Batch) -> None:
        """Start every step whose data is there; finish fan-outs and the run when they are done."""
        run = live.record
        progress = True
        while progress and run.status not in RUN_TERMINAL:
            progress = False
            for spec_id, spec in live.spec.steps.items():
                if run.status in RUN_TERMINAL:
                    return
                step = live.steps[spec_id]
                if step.status == STEP_PENDING and step.fan_out < 0:
                    deps = [live.steps[d].status for d in live.deps.get(spec_id, [])]
                    if any(s not in (STEP_SUCCEEDED, STEP_SKIPPED) for s in deps):
                        continue
                    progress = True
                    if STEP_SKIPPED in deps:
                        self._finish_step(live, step, STEP_SKIPPED, batch)
                        continue
                    scope = self._scope(live)
                    try:
                        if spec.when is not None and not evaluate_condition(spec.when, scope):
                            self._finish_step(live, step, STEP_SKIPPED, batch)
                            continue
                        if spec.for_each is not None:
                            items = evaluate(spec.for_each, scope)
                            if not isinstance(items, list):
                                raise _MappingError(
                                    f"for_each must evaluate to an array, got {type(items).__name__}"
                                )
                            inputs = [evaluate(spec.input, {**scope, "item": item}) for item in items]
                        else:
                            step_input = evaluate(spec.input, scope)
                    except (AccordError, _MappingError) as exc:
                        self._fail_mapping(live, step, TaskFailure("MappingError", str(exc), False), batch)
                        return
                    if spec.for_each is None:
                        if not self._start_step(live, step, step_input, batch):
                            return
                        continue
                    step.fan_out, step.status, step.started_ms = len(inputs), STEP_RUNNING, now_ms()
                    step.input = items
                    batch.step(step)
                    for index, item_input in enumerate(inputs):
                        item_id = f"{spec_id}[{index}]"
                        item = StepRecord(
                            run_id=run.run_id,
                            step_id=item_id,
                            spec_id=spec_id,
                            item_index=index,
                            contract=step.contract,
                            contract_version=step.contract_version,
                            team=step.team,
                            status=STEP_PENDING,
                            idempotency_key=f"{run.run_id}:{item_id}",
                            span_id=span_builders.new_span_id(),
                            input=item_input,
                            policy=step.policy,
                        )
                        live.steps[item_id] = item
                        batch.step(item)
                if step.fan_out >= 0 and step.status == STEP_RUNNING:
                    items_ = [live.steps[f"{spec_id}[{i}]"] for i in range(step.fan_out)]
                    active = sum(1 for i in items_ if i.status in (STEP_SCHEDULED, STEP_RUNNING))
                    limit = spec.concurrency or self._settings.default_fan_out
                    for item in items_:
                        if active >= limit:
                            break
                        if item.status == STEP_PENDING:
                            if not self._start_step(live, item, item.input, batch):
                                return
                            active += 1
                    if all(i.status == STEP_SUCCEEDED for i in items_):
                        step.output = [i.output for i in items_]
                        self._finish_step(live, step, STEP_SUCCEEDED, batch)
                        progress = True
        if run.status in RUN_TERMINAL:
            return
        if all(live.steps[s].status in (STEP_SUCCEEDED, STEP_SKIPPED) for s in live.spec.steps):
            self._finish_run(
                live, RUN_SUCCEEDED, None, _evaluate_output(live.spec.output, self._scope(live)), batch
            )

    # ================= timers =================

    async def _timer_loop(self) -> None:
        while True:
            now = now_ms()
            batch = _Batch()
            while self._timers and self._timers[0][0] <= now:
                _, _, kind, key = heapq.heappop(self._timers)
                try:
                    self._fire(kind, key, now, batch)
                except Exception:
                    logger.exception("timer %s %s failed", kind, key)
            try:
                await self._commit(batch)
            except Exception:
                logger.exception("committing timer transitions failed")
            timeout = (self._timers[0][0] - now_ms()) / 1000 if self._timers else None
            if timeout is not None and timeout <= 0:
                continue
            try:
                await asyncio.wait_for(self._timer_wake.wait(), timeout)
            except TimeoutError:
                pass
            self._timer_wake.clear()

    def _fire(self, kind: str, key: str, now: int, batch: _Batch) -> None:
        if kind == _TIMER_RETRY:
            run_id, step_id = key.split("\x00", 1)
            live = self._runs.get(run_id)
            if live is None:
                return
            step = live.steps.get(step_id)
            if (
                step is not None
                and step.status == STEP_SCHEDULED
                and step_id not in live.current
                and step.next_attempt_ms
                and step.next_attempt_ms <= now
            ):
                self._new_attempt(live, step, batch)
            return
        live_ = self._attempt_runs.get(key)
        if live_ is None:
            return
        attempt = live_.attempts[key]
        step = live_.steps[attempt.step_id]
        _, timeouts = policy_from_json(step.policy)
        if kind == _TIMER_S2S and attempt.status == ATTEMPT_SCHEDULED:
            error = TaskFailure(
                "ScheduleToStartTimeout",
                f"no agent of team {step.team} picked up {step.contract}@{attempt.major} within "
                f"{timeouts.schedule_to_start:g}s",
                False,
            )
            self._attempt_failed(live_, attempt, ATTEMPT_TIMED_OUT, error, batch)
        elif kind == _TIMER_CLOSE and attempt.status == ATTEMPT_RUNNING:
            if attempt.close_deadline_ms and attempt.close_deadline_ms <= now:
                error = TaskFailure(
                    "StartToCloseTimeout",
                    f"attempt {attempt.number} on agent {attempt.agent_id} did not finish within "
                    f"{timeouts.start_to_close:g}s",
                    True,
                )
                self._attempt_failed(live_, attempt, ATTEMPT_TIMED_OUT, error, batch)
        elif kind == _TIMER_LEASE and attempt.status == ATTEMPT_RUNNING:
            lease = self._leases.get(key, 0)
            if lease > now:
                batch.timers.append((lease, _TIMER_LEASE, key))
                return
            error = TaskFailure(
                "HeartbeatTimeout",
                f"agent {attempt.agent_id} sent no heartbeat for attempt {attempt.number} within "
                f"{timeouts.heartbeat:g}s",
                True,
            )
            self._attempt_failed(live_, attempt, ATTEMPT_TIMED_OUT, error, batch)


class _MappingError(Exception):
    pass


def _dependencies(spec: Workflow) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    for spec_id, step in spec.steps.items():
        found: list[str] = []
        for template in (step.input, step.when, step.for_each):
            if template is None:
                continue
            for ref in find_references(template):
                sid = ref.step_id
                if sid and sid in spec.steps and sid not in found and sid != spec_id:
                    found.append(sid)
        deps[spec_id] = found
    return deps


def _evaluate_output(template: Any, scope: dict[str, Any]) -> Any:
    if template is None:
        return {}
    try:
        return evaluate(template, scope)
    except AccordError:
        if isinstance(template, dict):
            result = {}
            for key, value in template.items():
                try:
                    result[key] = evaluate(value, scope)
                except AccordError:
                    result[key] = None  # e.g. the output of a skipped step
            return result
        return None


def _ordered_steps(steps: list[StepRecord]) -> list[StepRecord]:
    def key(step: StepRecord) -> tuple[int, str, int]:
        return (step.started_ms or 1 << 62, step.spec_id, -1 if step.item_index is None else step.item_index)

    return sorted(steps, key=key)


def _canonical(value: Any) -> str:
    """A run input as comparable text: the same JSON value gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
