"""The engine: turns what callers, agents and timers say into transitions of runs, durably.

Each transition reads the run's state (from a cache of the runs this process is driving, or the
store), applies one pure function of ``machine`` to it, and commits what it changed with
compare-and-swap on the run's version, in one store transaction together with the timers it arms
and the tasks it offers (see docs/architecture.md, "Durable state"). Nothing that decides what
happens next lives only in memory: memory holds caches and the agents' open long polls, so a
restart loads nothing; timers fire from the store (``timers.TimerProcessor``) and agents find
offered tasks in the store (``poll``).

Within this process, transitions of one run take turns (a lock per run); a commit that loses to
another writer (``VersionConflict``) drops the cached state, reads the run again and tries anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from contracts import lifecycle
from contracts.composition import emitted_sensitive
from contracts.errors import (
    AccordError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    UnreachableError,
)
from contracts.limits import InlineBudgetSpent, inline_budget
from contracts.model import WAIT_APPROVAL, WAIT_SIGNAL, Contract, RetryPolicy, Timeouts, Workflow
from contracts.policy import Verdict, agent_document
from contracts.refs import EMITS_ROOTS, evaluate
from contracts.validation import validate_payload
from contracts.versions import is_name
from coordinator.checks import INLINE_BUDGET_S, INLINE_BYTES, Checks, payload_size, validate_large_inline
from coordinator.config import EngineSettings
from coordinator.dispatch import Dispatcher, QueueKey, Waiter
from coordinator.engine import authz, machine
from coordinator.engine.limits import SETTING_KEY as LIMITS_SETTING
from coordinator.engine.limits import (
    TeamLimits,
    format_rate,
    limits_from_setting,
    limits_to_setting,
    start_burst,
)
from coordinator.engine.policy import policy_from_json
from coordinator.engine.spans import SpanBuffer
from coordinator.engine.state import RunState, Transition
from coordinator.engine.timers import TimerProcessor
from coordinator.engine.views import RunView, snapshot_view, state_view
from coordinator.principal import Principal
from coordinator.redaction import scalar_values, scrub_text
from coordinator.store.base import Store, StoreHint
from coordinator.store.records import (
    ATTEMPT_CANCELLED,
    ATTEMPT_FAILED,
    ATTEMPT_RUNNING,
    ATTEMPT_SCHEDULED,
    INFLIGHT_CONTRACT,
    INFLIGHT_TEAM,
    OVERRIDE_ACTION,
    RUN_RUNNING,
    RUN_TERMINAL,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SUCCEEDED,
    TIMER_CHECK_INPUT,
    TIMER_LEASE,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    ContractRecord,
    EventRecord,
    IdempotencyConflict,
    LimitReached,
    OfferRecord,
    RunFilter,
    RunRecord,
    RunSnapshot,
    StepRecord,
    TaskFailure,
    TeamRecord,
    TimerRecord,
    VersionConflict,
    WorkflowRecord,
)
from coordinator.telemetry.propagation import format_traceparent, new_span_id, new_trace_id, parse_traceparent
from coordinator.telemetry.sampling import decide_sampled
from coordinator.telemetry.sink import SpanSink

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How often a transition that lost a compare-and-swap is tried again with the run read anew.
_CONFLICT_RETRIES = 5
# Offers read from the store per look: one for each poll sharing the look, and a few more in case
# one is taken meanwhile. Alone on its store a coordinator's polls pass by each other's claims in
# the query itself, so a claim is lost only to a run that moved on (cancelled, say); with other
# coordinators on the store their polls claim from the same queue heads.
_OFFERS_SPARE = 7
_OFFERS_SPARE_ALONE = 1
# How soon a poll that passed by offers other polls were claiming looks again.
_PASSED_BY_S = 0.01
# How long, and how many, runs that ended here are kept for the views that follow (Engine._ended).
_ENDED_KEPT_S = 2.0
_ENDED_KEPT = 1024
# How often a coordinator sharing its store tells the others which agents it serves.
_PRESENCE_EVERY_S = 1.0
# How long ``stop`` waits for tasks being given back (a stop stage allows 10 s in all).
_HAND_BACK_ON_STOP_S = 5.0


def _set_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a policy that are set (None: not given, the default applies)."""
    return {k: v for k, v in values.items() if v not in (None, (), [])}


def _audit_intervention(
    principal: Principal, action: str, attempt: AttemptRecord, agent_id: str, tr: Transition
) -> None:
    """An agent's report is the team's own work, kept in its run (not an audit entry); the
    admin reporting on a team's attempt is a platform intervention, written with it."""
    team = attempt.contract.split("/", 1)[0]
    if principal.intervenes_on(team):
        tr.audit.append(
            AuditRecord(
                at_ms=tr.now,
                actor=principal.actor,
                action=action,
                object=attempt.attempt_id,
                owner_team=team,
                platform_intervention=True,
                details={"run_id": attempt.run_id, "agent_id": agent_id},
            )
        )


def now_ms() -> int:
    return int(time.time() * 1000)


class Registry(Protocol):
    """What the engine needs from the registry."""

    async def newest_workflow(self, name: str) -> WorkflowRecord | None: ...
    async def workflow_version(self, name: str, version: int) -> WorkflowRecord | None: ...
    def workflow_spec(self, record: WorkflowRecord) -> Workflow: ...
    async def resolve(self, name: str, version_range: str) -> Contract | None: ...
    async def contract(self, name: str, version: str) -> Contract | None: ...
    async def retired_in_range(self, name: str, version_range: str) -> list[ContractRecord]: ...
    async def adapter_for(self, name: str, version_range: str) -> Contract | None: ...
    async def workflow_disabled_ms(self, name: str) -> int: ...
    # where sensitive values land in a run (an emitted event's taint follows them)
    async def run_flows(self, run: RunRecord) -> tuple[str, ...]: ...

    # large payloads are validated in its worker processes (coordinator/checks.py)
    checks: Checks

    # policy rules checked when an agent registers (docs/governance.md)
    @property
    def policies(self) -> AgentPolicies: ...


class AgentPolicies(Protocol):
    """What the engine needs of the registry's policies: an agent's registration is checked."""

    async def check_document(
        self, kind: str, obj: str, owner_team: str, what: str, data: dict[str, Any], overrides: dict[str, str]
    ) -> Verdict: ...
    async def record_overrides(
        self, principal: Principal, verdict: Verdict, kind: str, obj: str, owner_team: str
    ) -> None: ...


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


@dataclass(frozen=True)
class _Retry:
    """What a retried run takes from the run it retries."""

    original: RunRecord
    contracts: dict[str, Contract]  # the versions it pinned
    reused: dict[str, StepRecord]  # workflow step id -> its record in the original run


class _Gone(Exception):
    """The run a transition was meant for does not exist (any more)."""


class _Look:
    """One read of offers shared by the polls that asked in the same turn of the loop."""

    __slots__ = ("polls", "read")

    def __init__(self) -> None:
        self.polls = 0
        self.read: asyncio.Future[list[OfferRecord]] | None = None


_NO_LIMITS = TeamLimits()  # a team's limits when it has none (frozen: one for all, not one per call)


class _Watch:
    """One watcher of a run (``Engine.watch``): ``any`` is set by every change, ``ended`` by a
    change that ended the run, or one this process cannot tell did not (another coordinator's).
    A watcher gathering changes for its next message waits on ``ended`` alone, so the changes
    in its window do not wake it one by one."""

    __slots__ = ("any", "ended")

    def __init__(self) -> None:
        self.any = asyncio.Event()
        self.ended = asyncio.Event()

    def changed(self, *, ended: bool) -> None:
        self.any.set()
        if ended:
            self.ended.set()


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
        self._limits = machine.Limits(default_fan_out=settings.default_fan_out)
        self._sampling_env: Mapping[str, str] = os.environ if sampling_env is None else sampling_env
        self._timers = TimerProcessor(store, self._fire, poll_s=settings.timer_poll_s)
        # Caches: the state of the runs this process drives (dropped when a run ends or a commit
        # loses a race), and the teams' retry/timeout defaults.
        self._runs: dict[str, RunState] = {}
        # Runs that ended here a moment ago, for the views right after their last transition (a
        # watcher's last message): an ended run changes no more. run id -> (until, state).
        self._ended: OrderedDict[str, tuple[float, RunState]] = OrderedDict()
        self._team_defaults: dict[str, tuple[RetryPolicy, Timeouts]] = {}
        self._team_limits: dict[str, TeamLimits] = {}
        self._team_claims: dict[str, asyncio.Lock] = {}
        self._contract_claims: dict[str, asyncio.Lock] = {}
        self._contract_limits: dict[QueueKey, tuple[float, int]] = {}  # -> (until monotonic, limit)
        self._inflight_contracts: dict[str, int] = {}  # contract -> attempts running, as last read
        self._inflight: dict[str, int] = {}  # team -> attempts running, as last read
        # The open part: one lock per run with a transition under way, watchers of runs.
        self._run_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._watchers: dict[str, set[_Watch]] = {}
        # run id -> the newest version hinted while the run is read from the store (``_load_state``)
        self._loading: dict[str, int] = {}
        # Offers a poll of this process is claiming now: the other polls pass them by.
        self._claiming: set[str] = set()
        # The reads of offers about to be made, by the queues they read (``_look``).
        self._looks: dict[tuple[QueueKey, ...], _Look] = {}
        self._giving_back: set[asyncio.Task[None]] = set()
        # Offers whose poll ended while claiming them: given back once the claim is written
        # (``_claim_lost``); until then ``stop`` waits for them too.
        self._abandoned: set[str] = set()
        # Called after every transition this process commits (metrics: runs started and finished,
        # attempts ended); it must not raise or block.
        self.on_commit: Callable[[RunRecord, Transition], None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._started_ms = now_ms()
        # How long a poll waits before reading the store again without being woken.
        self._fallback_s = settings.replica_poll_s if store.shared else float("inf")
        dispatcher.on_lost = self._handoff_lost
        # Told of the events a commit stored (a contract's ``emits:``), to hand them on at once
        # (coordinator.events; the events layer sits above the engine).
        self._on_events: Callable[[list[EventRecord]], None] | None = None

    def on_events_stored(self, listener: Callable[[list[EventRecord]], None]) -> None:
        """Call ``listener`` with the events each commit stored (after the commit)."""
        self._on_events = listener

    # ================= lifecycle =================

    async def start(self) -> None:
        """Fill the caches (teams' defaults, agents) and start firing timers. No run is loaded:
        runs are read when something happens to them."""
        self._started_ms = now_ms()
        for team in await self._store.list_teams():
            self._team_defaults[team.name] = (team.retry, team.timeouts)
        for agent in await self._store.list_agents():
            self._dispatcher.register_agent(agent, seen=False)
        await self.load_team_limits()
        self._spans.start()
        self._timers.start()
        if self._store.shared:
            self._store.subscribe(self._on_hint)
            self._spawn(self._tell_presence(), "engine-presence")
        logger.info("engine started")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def store_reachable_again(self) -> None:
        """The store's database was unreachable and answers again: heartbeats sent meanwhile
        were refused, so, as after a restart, a lease due now is extended by one heartbeat period
        from now rather than held against its agent (``_fire``)."""
        self._started_ms = now_ms()

    async def stop(self) -> None:
        await self._timers.stop()
        # Tasks being given back (a poll or a v2 stream that ended before its agent got the
        # task), and claims whose poll is gone, are written before the rest is cancelled: else a
        # task claimed as the coordinator stops would wait for its lease instead of going to
        # another agent at once.
        deadline = asyncio.get_running_loop().time() + _HAND_BACK_ON_STOP_S
        while self.handing_back():
            if asyncio.get_running_loop().time() > deadline:
                logger.warning(
                    "stopping: %d task(s) not yet given back; their leases will recover them",
                    self.handing_back(),
                )
                break
            if self._giving_back:
                await asyncio.wait(list(self._giving_back), timeout=0.05)
            else:
                await asyncio.sleep(0.01)
        for task in [*self._background, *self._giving_back]:
            task.cancel()
        await asyncio.gather(*self._background, *self._giving_back, return_exceptions=True)
        await self._spans.stop()

    def handing_back(self) -> int:
        """Tasks being claimed here, or given back, now: ``stop`` writes them before it ends."""
        return len(self._claiming) + len(self._abandoned) + len(self._giving_back)

    # ================= transitions =================

    @asynccontextmanager
    async def _run_lock(self, run_id: str) -> AsyncIterator[None]:
        lock, users = self._run_locks.get(run_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._run_locks[run_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._run_locks[run_id]
            if users <= 1:
                del self._run_locks[run_id]
            else:
                self._run_locks[run_id] = (lock, users - 1)

    async def _state(self, run_id: str) -> RunState:
        """The run's state: cached, or read from the store (raises ``_Gone``). Reads it under the
        run's lock: a state read while a transition of the run is being committed would be
        cached stale."""
        state = self._runs.get(run_id)
        if state is not None:
            return state
        async with self._run_lock(run_id):
            return await self._load_state(run_id)

    async def _load_state(self, run_id: str) -> RunState:
        """``_state`` for a caller that holds the run's lock."""
        state = self._runs.get(run_id)
        if state is not None:
            return state
        # Hints of other coordinators' commits of this run that arrive while it is read, and
        # until it is cached (its workflow and contracts may be read from the store too): a newer
        # version than the one read means the state read is stale already, not to cache.
        self._loading[run_id] = 0
        try:
            return await self._read_state(run_id)
        finally:
            self._loading.pop(run_id, None)

    async def _read_state(self, run_id: str) -> RunState:
        """``_load_state``'s reading, with ``_loading[run_id]`` set meanwhile."""
        snapshot = await self._store.load_run(run_id)
        if snapshot is None:
            raise _Gone(run_id)
        run = snapshot.run
        missing = ""
        workflow = await self._registry.workflow_version(run.workflow, run.workflow_version)
        if workflow is None:
            missing = f"workflow {run.workflow} version {run.workflow_version} is not registered"
        contracts: dict[str, Contract] = {}
        for name, version in run.pinned.items():
            contract = await self._registry.contract(name, version)
            if contract is None:
                missing = missing or f"pinned contract {name}@{version} is not registered"
            else:
                contracts[name] = contract
        if missing:
            if run.status not in RUN_TERMINAL:
                await self._abandon(snapshot, missing)
            raise NotFoundError(f"run {run_id} cannot go on: {missing}")
        assert workflow is not None
        spec = self._registry.workflow_spec(workflow)
        state = RunState.from_snapshot(snapshot, spec, contracts, spec.dependencies())
        if run.status not in RUN_TERMINAL and self._loading.get(run_id, 0) <= run.version:
            self._runs[run_id] = state
        return state

    async def _abandon(self, snapshot: RunSnapshot, missing: str) -> None:
        """A run whose workflow version or pinned contract is gone fails with ``ResumeError``
        (the caller holds the run's lock)."""
        logger.error("run %s cannot go on: %s", snapshot.run.run_id, missing)
        tr = Transition(now_ms())
        error = TaskFailure("ResumeError", f"the run could not be resumed: {missing}", False)
        machine.abandon(snapshot, error, tr)
        try:
            await self._store.apply(tr.changes())
        except VersionConflict:
            return  # changed meanwhile: the next reader decides again
        snapshot.run.version += 1
        for watch in self._watchers.get(snapshot.run.run_id, ()):
            watch.changed(ended=True)

    async def _transact(
        self, run_id: str, change: Callable[[RunState, Transition], T], *, recheck: bool = True
    ) -> T:
        """Apply ``change`` to the run's state and commit it (compare-and-swap), reading the run
        anew and applying it again while another writer wins. Raises ``_Gone``. ``recheck``: see
        ``_decide`` (False for a change whose "nothing to do" no newer state can turn around)."""
        for attempt in range(_CONFLICT_RETRIES):
            async with self._run_lock(run_id):
                state, tr, result = await self._decide(run_id, change, recheck)
                try:
                    await self._commit(state, tr)
                except VersionConflict as conflict:
                    logger.debug("run %s changed meanwhile (%s); reading it again", run_id, conflict.what)
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise FailedPreconditionError(
                            f"run {run_id} kept changing while this change was applied; try again"
                        ) from None
                    continue
                return result
        raise AssertionError("unreachable")

    async def _decide(
        self, run_id: str, change: Callable[[RunState, Transition], T], recheck: bool = True
    ) -> tuple[RunState, Transition, T]:
        """Apply ``change`` to the run's state (the caller holds the run's lock). With other
        coordinators on the store, a change that finds nothing to do on this process's cached
        state is applied again to the run as stored: another coordinator may have moved the run on
        (offered the attempt an agent reports on), and only the version check of a write would
        have told. (Alone on its store, a process's cache is the run as stored.)"""
        cached = run_id in self._runs
        state = await self._load_state(run_id)
        tr = Transition(now_ms())
        try:
            # The payloads it validates are small (larger ones go to workers first), but a schema
            # may still be costly: past the inline budget a validation raises InlineBudgetSpent,
            # which the change handles (a mapped input) or its caller does (an output, ``complete``).
            with inline_budget(INLINE_BUDGET_S):
                result = change(state, tr)
        except BaseException:
            self._runs.pop(run_id, None)  # changed in place, half way: the store has the truth
            raise
        if cached and not tr and recheck and self._store.shared:
            self._runs.pop(run_id, None)
            return await self._decide(run_id, change)
        return state, tr, result

    async def _commit(self, state: RunState, tr: Transition) -> None:
        """Write ``tr`` durably; then hand tasks to waiting polls, wake the rest, notify."""
        if not tr:
            return
        # Eager hand-off: a new attempt an agent is already waiting for is claimed for that agent
        # in this same durable commit, and handed to its poll only once the commit is done (so a
        # hop costs one commit, not a commit for the transition and another for the claim).
        handoffs: list[tuple[Waiter, AttemptRecord]] = []
        limited = self._limited(state.record.caller_team)
        # A contract is capped by its owner's newest version of the major, whatever version this
        # run pinned (as polls count it: ``_contract_limit``), so a run pinned before the owner
        # set the cap is held by it too.
        try:
            capped = {a.contract for a in tr.offered if await self._contract_limit(a.contract, a.major)}
        except BaseException:
            self._runs.pop(state.record.run_id, None)  # changed in place, not written
            raise
        for attempt in tr.offered:
            if attempt.status != ATTEMPT_SCHEDULED or limited or attempt.contract in capped:
                continue  # tasks under a limit are claimed by polls, which count them
            waiter = self._dispatcher.reserve((attempt.contract, attempt.major))
            if waiter is not None:
                machine.claim(state, attempt, waiter.agent_id, tr)
                handoffs.append((waiter, attempt))
        changes = tr.changes()
        try:
            # A slot freed: held offers may go, here and through the other coordinators.
            changes.frees_held = bool(changes.inflight_remove) and (
                bool(limited) or await self._frees_a_capped_slot(state, changes.inflight_remove)
            )
            await self._store.apply(changes)
        except BaseException:
            # The records in the cache were changed in place: drop them, the store has the truth.
            self._runs.pop(state.record.run_id, None)
            for waiter, _ in handoffs:
                self._dispatcher.unreserve(waiter)
            raise
        if tr.events and self._on_events is not None:
            self._on_events(list(tr.events))
        if tr.run is not None:
            tr.run.version = 1 if tr.new_run else tr.run.version + 1
        if self.on_commit is not None:
            try:
                self.on_commit(state.record, tr)
            except Exception:  # an observer never fails a committed transition
                logger.exception("observing a committed transition failed")
        if tr.finished:
            self._runs.pop(state.record.run_id, None)
            self._ended_now(state)
            run = state.record
            logger.info("run %s %s", run.run_id, run.status, extra={"trace_id": run.trace_id})
        elif tr.new_run:
            self._runs[state.record.run_id] = state
        for waiter, attempt in handoffs:
            if not self._dispatcher.hand(waiter, attempt.attempt_id):
                self._handoff_lost(attempt.attempt_id)
        for offer in changes.offers_add:
            self._dispatcher.offered((offer.contract, offer.major))
        if changes.frees_held:
            self._dispatcher.wake_all()  # a slot freed: held offers may go
        if changes.timers_set:
            self._timers.hint(min(t.due_ms for t in changes.timers_set))
        if tr.spans:
            self._spans.add(tr.spans)
        for watch in self._watchers.get(state.record.run_id, ()):
            watch.changed(ended=tr.finished)

    # ================= other coordinators on the same store =================

    def _on_hint(self, hint: StoreHint) -> None:
        """Another coordinator committed (see ``StoreHint``): drop the cached states it made
        stale, and wake the watchers, polls and timers that wait for what it did."""
        if hint.everything:
            self._runs.clear()
            self._ended.clear()
            for run_id in self._loading:
                self._loading[run_id] = 1 << 62
            for watchers in self._watchers.values():
                for watch in watchers:
                    watch.changed(ended=True)  # not known here: as if it ended
            self._dispatcher.wake_all()
            self._timers.hint(0)
            return
        for run_id, version in hint.runs.items():
            self._forget(run_id, version)
            if run_id in self._loading:
                self._loading[run_id] = max(self._loading[run_id], version)
            for watch in self._watchers.get(run_id, ()):
                watch.changed(ended=True)  # not known here: as if it ended
        if hint.agents:
            self._dispatcher.seen_elsewhere(hint.agents, 3 * _PRESENCE_EVERY_S)
        for key, count in hint.queues.items():
            # As many polls as there are tasks: the rest would only race them for the same rows.
            self._dispatcher.offered(key, wake=count)
        if hint.timer_due_ms is not None:
            self._timers.hint(hint.timer_due_ms)
        if hint.freed:
            self._dispatcher.wake_all()  # a task under a limit ended there: held offers may go

    async def _tell_presence(self) -> None:
        """Tell the other coordinators which agents this one serves, every moment: agents
        long-poll one coordinator, and every coordinator explains why a step waits ("no agent
        ... is serving", "... busy")."""
        since = time.monotonic()
        failing = False
        while True:
            await asyncio.sleep(_PRESENCE_EVERY_S)
            now = time.monotonic()
            try:
                await self._store.hint_presence(self._dispatcher.presence(since))
                since, failing = now, False
            except UnreachableError:
                pass  # the store says so itself, once; the next round tells what was missed
            except Exception as exc:
                if not failing:
                    logger.warning("telling the other coordinators which agents poll here failed: %s", exc)
                failing = True

    def _ended_now(self, state: RunState) -> None:
        self._ended[state.record.run_id] = (time.monotonic() + _ENDED_KEPT_S, state)
        self._ended.move_to_end(state.record.run_id)
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)

    def _recently_ended(self, run_id: str) -> RunState | None:
        kept = self._ended.get(run_id)
        if kept is None:
            return None
        if kept[0] < time.monotonic():
            del self._ended[run_id]
            return None
        return kept[1]

    def known_run(self, run_id: str) -> RunRecord | None:
        """The run's record as this process last wrote or read it (None: not at hand): for what
        never changes in a run (its workflow version, pinned contracts, trace)."""
        state = self._runs.get(run_id) or self._recently_ended(run_id)
        return None if state is None else state.record

    def _forget(self, run_id: str, version: int | None) -> None:
        """Drop the cached state of a run if it is older than ``version`` (None: the run is
        gone). A transition under way with it still commits by compare-and-swap: a stale one
        loses and reads the run again."""
        self._ended.pop(run_id, None)
        state = self._runs.get(run_id)
        if state is not None and (version is None or state.record.version < version):
            del self._runs[run_id]

    async def _changed(self, run_id: str, event: asyncio.Event, seen_version: int) -> None:
        """Until ``event`` says the run changed. With other coordinators on the store, also
        reads the run's version every ``replica_poll_s``: their hint of a change may be lost."""
        if not self._store.shared:
            await event.wait()
            return
        while True:
            try:
                await asyncio.wait_for(event.wait(), self._settings.replica_poll_s)
                return
            except TimeoutError:
                pass
            stored = await self._store.get_run(run_id)
            if stored is None or stored.version != seen_version:
                self._forget(run_id, None if stored is None else stored.version)
                return

    # ================= team defaults and agents =================

    # ================= team limits (coordinator/engine/limits.py) =================

    async def load_team_limits(self) -> dict[str, TeamLimits]:
        """Read the teams' limits from the store into the cache (at start, and with the other
        shared caches)."""
        self._team_limits = limits_from_setting(await self._store.get_setting(LIMITS_SETTING))
        return self._team_limits

    def team_limits(self, team: str) -> TeamLimits:
        return self._team_limits.get(team, _NO_LIMITS)

    async def set_team_limits(
        self, principal: Principal, team: str, max_concurrency: int | None, start_rate: float | None
    ) -> TeamLimits:
        """The admin sets a team's limits (a value left None stays as it is; 0 removes it)."""
        if not principal.admin:
            raise PermissionDeniedError(f"only the admin sets a team's limits (team {team}'s here)")
        if await self._store.get_team(team) is None:
            raise NotFoundError(f"team {team} does not exist")
        if max_concurrency is not None and not 0 <= max_concurrency <= 1_000_000:
            raise InvalidArgumentError("--max-concurrency must be between 0 (none) and 1000000")
        current = limits_from_setting(await self._store.get_setting(LIMITS_SETTING))
        old = current.get(team, TeamLimits())
        new = TeamLimits(
            max_concurrency=old.max_concurrency if max_concurrency is None else max_concurrency,
            start_rate=old.start_rate if start_rate is None else start_rate,
        )
        if new == TeamLimits():
            current.pop(team, None)
        else:
            current[team] = new
        await self._store.set_setting(
            LIMITS_SETTING,
            limits_to_setting(current),
            AuditRecord(
                at_ms=now_ms(),
                actor=principal.actor,
                action="team.limits",
                object=team,
                owner_team=team,
                platform_intervention=True,
                details=dataclasses.asdict(new),
            ),
        )
        self._team_limits = current
        return new

    async def admit_start(self, principal: Principal) -> None:
        """Refuse a run start over the caller team's start rate (OverloadedError with a retry
        hint: RESOURCE_EXHAUSTED and retry-after-ms on the wire). The token is taken from the
        team's bucket in the store, which every coordinator on it shares; a team without a rate
        does not touch the store."""
        if principal.admin:
            return
        rate = self.team_limits(principal.team).start_rate
        if not rate:
            return
        wait_ms = await self._store.take_start_token(principal.team, rate, start_burst(rate), now_ms())
        if wait_ms:
            error = OverloadedError(
                f"team {principal.team} may start {format_rate(rate)} runs; try again in {wait_ms} ms "
                "(the admin sets it: accord team limits)"
            )
            error.retry_after_ms = wait_ms
            raise error

    def team_defaults(self, team: str) -> tuple[RetryPolicy, Timeouts]:
        return self._team_defaults.get(team, (RetryPolicy(), Timeouts()))

    def cache_team_defaults(self, teams: list[TeamRecord]) -> None:
        """The teams' defaults as read from the store (set through any coordinator)."""
        self._team_defaults = {team.name: (team.retry, team.timeouts) for team in teams}

    async def set_team_defaults(
        self, principal: Principal, team: str, retry: RetryPolicy, timeouts: Timeouts
    ) -> None:
        """A team's retry and timeout defaults, as its agent's config gives them (audited when
        they change: docs/production.md, "What each audit entry means")."""
        if self._team_defaults.get(team) != (retry, timeouts):
            await self._store.set_team_defaults(
                team,
                retry,
                timeouts,
                AuditRecord(
                    at_ms=now_ms(),
                    actor=principal.actor,
                    action="team.defaults",
                    object=team,
                    owner_team=team,
                    platform_intervention=principal.intervenes_on(team),
                    details={
                        "retry": _set_fields(dataclasses.asdict(retry)),
                        "timeouts": _set_fields(dataclasses.asdict(timeouts)),
                    },
                ),
            )
            self._team_defaults[team] = (retry, timeouts)

    async def register_agent(
        self,
        principal: Principal,
        agent: AgentRecord,
        retry: RetryPolicy,
        timeouts: Timeouts,
        overrides: Mapping[str, str] | None = None,
    ) -> list[str]:
        authz.may_act_as(principal, agent.agent_id, self._dispatcher.agent(agent.agent_id))
        authz.may_serve(agent.team, agent.bindings)
        # Policies (docs/governance.md): advise warns; require refuses unless overridden.
        what = f"agent {agent.agent_id}"
        verdict = await self._registry.policies.check_document(
            "agent",
            what,
            agent.team,
            what,
            agent_document(
                agent.agent_id,
                agent.team,
                agent.hostname,
                agent.concurrency,
                [(b.contract, b.major, b.engine) for b in agent.bindings],
                retry,
                timeouts,
            ),
            dict(overrides or {}),
        )
        if verdict.blocking:
            raise verdict.refusal(what)
        warnings: list[str] = list(verdict.warnings)
        retired: list[str] = []
        for binding in agent.bindings:
            version_range = f"^{binding.major}" if binding.major else "*"
            found = await self._registry.resolve(binding.contract, version_range)
            if found is not None:
                continue
            if not await self._registry.retired_in_range(binding.contract, version_range):
                warnings.append(f"no version of {binding.contract}@{binding.major} is registered yet")
                continue
            adapter = await self._registry.adapter_for(binding.contract, version_range)
            retired.append(
                f"{binding.contract}@{binding.major}"
                + (
                    f" (its callers are served by {adapter.ref} through its migration adapter)"
                    if adapter
                    else ""
                )
            )
        if retired:
            # One line for all of them (the agent logs each warning as a line).
            warnings.append(
                f"this agent serves only retired versions of {', '.join(retired)}: they get no new tasks; "
                "stop serving them once their runs have finished"
            )
        # Audited only when new or changed (the store compares): agents register again after
        # every outage, and that is not a change.
        changed = await self._store.put_agent(
            agent,
            AuditRecord(
                at_ms=agent.registered_ms or now_ms(),
                actor=principal.actor,
                action="agent.register",
                object=agent.agent_id,
                owner_team=agent.team,
                platform_intervention=principal.intervenes_on(agent.team),
                details={
                    "serves": [f"{b.contract}@{b.major}" for b in agent.bindings],
                    # what serves each contract, as the agent's hash of its configuration
                    "fingerprints": {
                        f"{b.contract}@{b.major}": b.fingerprint for b in agent.bindings if b.fingerprint
                    },
                    "concurrency": agent.concurrency,
                    "hostname": agent.hostname,
                    "agent_version": agent.agent_version,
                },
            ),
        )
        self._dispatcher.register_agent(agent)
        await self.set_team_defaults(principal, agent.team, retry, timeouts)
        if verdict.used and changed:  # an agent registering again after an outage is no new override
            await self._registry.policies.record_overrides(principal, verdict, "agent", what, agent.team)
        return warnings

    # ================= runs: the caller's side =================

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
        overrides: Mapping[str, str] | None = None,
    ) -> tuple[RunView, bool]:
        """Start a run of the newest version of a workflow, or of version N when it is named
        ``team/name@N`` (or find the one with the same idempotency key: a unique key in the
        store, so two starts racing make one run). A disabled workflow starts none.
        ``overrides``: rule -> reason (``lifecycle.OVERRIDABLE``), recorded when used.
        ``traceparent`` makes the run's span a child of the caller's span; ``links``
        (``{trace_id, span_id}``) are span links to what caused it, e.g. an event.
        ``rerun_of``: start it with the stored input of that run (which viewers only ever see
        redacted), of that run's workflow; ``run_input`` is then ignored."""
        if rerun_of:
            original = await self._rerun_source(principal, rerun_of, workflow_name)
            workflow_name, run_input = original.workflow, copy.deepcopy(original.input)
        workflow_name, _, version_text = workflow_name.partition("@")
        if not is_name(workflow_name):
            raise InvalidArgumentError(
                f"workflow name '{workflow_name}' must be team/name, e.g. shipping/order-to-cash"
            )
        overrides = _checked_overrides(overrides or {})
        if version_text:
            if not version_text.isdigit() or int(version_text) < 1:
                raise InvalidArgumentError(
                    f"'{workflow_name}@{version_text}': a workflow version is a number, e.g. {workflow_name}@3"
                )
            record = await self._registry.workflow_version(workflow_name, int(version_text))
            if record is None and await self._registry.newest_workflow(workflow_name) is not None:
                raise NotFoundError(
                    f"workflow {workflow_name} has no version {version_text} (see accord workflow show {workflow_name})"
                )
        else:
            record = await self._registry.newest_workflow(workflow_name)
        if record is None:
            raise NotFoundError(f"workflow {workflow_name} is not registered")
        authz.may_start(principal, record)
        if await self._registry.workflow_disabled_ms(workflow_name):
            raise FailedPreconditionError(
                f"{workflow_name}: workflow is disabled; 'accord workflow enable {workflow_name}' lets it start runs again"
            )
        # A key already taken is found by the run's insert (a unique key in the store), not by a
        # read before it: nearly every start with a key (every request id is one) is a new run.
        try:
            view = await self._start(
                principal, record, run_input, idempotency_key, traceparent, links or [], overrides
            )
        except IdempotencyConflict as taken:  # started before, or by a start racing this one
            existing = await self._store.get_run(taken.run_id)
            if existing is None:
                raise
            return await self._existing_start(existing, run_input, idempotency_key), False
        except AccordError:
            # Refused as a new run: a retry of a start that went through answers with its run
            # all the same, whatever would refuse a new one now (a newer workflow version, say).
            existing = (
                await self._store.find_run(workflow_name, principal.actor, idempotency_key)
                if idempotency_key
                else None
            )
            if existing is None:
                raise
            return await self._existing_start(existing, run_input, idempotency_key), False
        return view, True

    async def _existing_start(self, existing: RunRecord, run_input: Any, key: str) -> RunView:
        if _canonical(existing.input) != _canonical(run_input):
            raise InvalidArgumentError(
                f"idempotency key {key} was already used for run {existing.run_id} with a different input"
            )
        return await self._view(existing.run_id)

    async def _rerun_source(self, principal: Principal, run_id: str, workflow_name: str) -> RunRecord:
        """The run ``run_id`` to re-run, if ``principal`` may start its workflow."""
        original = await self._store.get_run(run_id)
        if original is None:
            raise NotFoundError(f"run {run_id} does not exist")
        authz.may_control(principal, original, "re-run")
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
        overrides: Mapping[str, str],
        *,
        retry: _Retry | None = None,
    ) -> RunView:
        spec = self._registry.workflow_spec(record)
        violations = await self._registry.checks.validate(
            f"the input of {record.name}", spec.input_schema, run_input, "run input"
        )
        if violations:
            raise InvalidArgumentError(
                f"the input of {record.name} does not match its schema", [str(v) for v in violations]
            )
        contracts: dict[str, Contract] = dict(retry.contracts) if retry is not None else {}
        adapted: dict[str, int] = dict(retry.original.adapted) if retry is not None else {}
        for step in spec.calls:
            if step.contract in contracts:
                continue  # a retry: pinned to the versions of the run it retries
            contract = await self._registry.resolve(step.contract, step.version_range)
            if contract is None:
                retired = await self._registry.retired_in_range(step.contract, step.version_range)
                adapter = await self._registry.adapter_for(step.contract, step.version_range)
                if retired and adapter is not None:
                    # The old major is retired; a newer one serves its callers through its
                    # migration adapter (docs/contracts.md, "Migration adapters").
                    authz.may_call(record, step.id, adapter)
                    contracts[step.contract] = adapter
                    adapted[step.contract] = retired[-1].contract.major
                    continue
                if retired:
                    newest = retired[-1].contract
                    use = (
                        f"; its replacement is {newest.deprecated.replacement}"
                        if newest.deprecated and newest.deprecated.replacement
                        else ""
                    )
                    raise FailedPreconditionError(
                        f"step {step.id}: every version of {step.contract} in {step.version_range} is retired "
                        f"({', '.join(r.contract.version for r in retired)}){use}"
                    )
                raise FailedPreconditionError(
                    f"step {step.id}: no registered version of {step.contract} matches {step.version_range}"
                )
            authz.may_call(record, step.id, contract)
            contracts[step.contract] = contract
        warnings, used = _sunset_rules(record, spec, contracts, overrides, principal.actor)
        warnings += [
            f"{name}@{major} is retired; this run calls it via {contracts[name].ref} through its migration adapter"
            for name, major in adapted.items()
        ]
        parent = parse_traceparent(traceparent)
        trace_id = parent.trace_id if parent else new_trace_id()
        # Sampled or not, once for the whole run: every task carries it in its traceparent flags.
        sampled = decide_sampled(trace_id, parent.flags if parent else None, self._sampling_env)
        created = now_ms()
        run = RunRecord(
            run_id=f"run-{time.strftime('%Y%m%d')}-{secrets.token_hex(6)}",
            workflow=record.name,
            workflow_version=record.version,
            team=record.team,
            status=RUN_RUNNING,
            input=run_input,
            created_ms=created,
            trace_id=trace_id,
            span_id=new_span_id(),
            parent_span_id=parent.span_id if parent else "",
            links=list(links),
            idempotency_key=key,
            caller_team=principal.actor,
            started_by=principal.actor,
            pinned={name: c.version for name, c in contracts.items()},
            # The teams a waiting step names take part too: they see the run to answer it.
            involved_teams=tuple(
                sorted(
                    {
                        record.team,
                        *(c.team for c in contracts.values()),
                        *(team for step in spec.steps.values() if step.wait for team in step.wait.by),
                    }
                )
            ),
            sampled=sampled,
            warnings=warnings,
            adapted=adapted,
            retry_of=retry.original.run_id if retry is not None else "",
        )
        state = machine.new_run(run, spec, contracts, self._team_defaults)
        tr = Transition(created, new_run=True)
        details: dict[str, Any] = {"workflow": record.name, "version": record.version}
        if retry is not None:
            machine.reuse(state, retry.original.run_id, retry.reused, tr)
            details.update(retry_of=retry.original.run_id, reused=sorted(retry.reused))
        tr.audit.append(
            AuditRecord(
                at_ms=created,
                actor=principal.actor,
                action="run.retry" if retry is not None else "run.start",
                object=run.run_id,
                owner_team=record.team,
                platform_intervention=principal.intervenes_on(record.team),
                details=details,
            )
        )
        for rule, (reason, source, what) in used.items():
            # One entry per override used, in the run's own transaction: who, when, why
            # (Store.list_overrides; the autonomy report counts them).
            tr.audit.append(
                AuditRecord(
                    at_ms=created,
                    actor=principal.actor,
                    action=OVERRIDE_ACTION,
                    object=run.run_id,
                    owner_team=record.team,
                    platform_intervention=principal.intervenes_on(record.team),
                    details={
                        "rule": rule,
                        "reason": reason,
                        "from": source,
                        "run_id": run.run_id,
                        "workflow": record.name,
                        "version": record.version,
                        "overridden": what,
                    },
                )
            )
        with inline_budget(INLINE_BUDGET_S):  # as in ``_decide``: a costly first input goes to a worker
            machine.start(state, tr, self._limits)
        async with self._run_lock(run.run_id):
            await self._commit(state, tr)
        return await self._state_view(state)

    async def retry_run(
        self, principal: Principal, run_id: str, from_step: str = "", request_id: str = ""
    ) -> tuple[RunView, bool]:
        """A new run of ``run_id``'s workflow version with its input, pinned to its contract
        versions, reusing the recorded output of every step that is neither ``from_step`` nor
        downstream of it (without ``from_step``: of every step that neither failed nor was left
        unfinished, nor is downstream of one that was). See docs/workflows.md, "Retry and re-run"."""
        snapshot = await self._store.load_run(run_id)
        if snapshot is None:
            raise NotFoundError(f"run {run_id} does not exist")
        original = snapshot.run
        authz.may_control(principal, original, "retry")
        if original.status not in RUN_TERMINAL:
            raise FailedPreconditionError(
                f"run {run_id} is still {original.status}; wait for it to end or cancel it "
                f"(accord runs cancel {run_id}) before retrying it"
            )
        record = await self._registry.workflow_version(original.workflow, original.workflow_version)
        if record is None:
            raise FailedPreconditionError(
                f"run {run_id} ran {original.workflow} version {original.workflow_version}, which is "
                "no longer registered; start a new run instead (accord runs rerun)"
            )
        contracts: dict[str, Contract] = {}
        for name, version in original.pinned.items():
            contract = await self._registry.contract(name, version)
            if contract is None:
                raise FailedPreconditionError(
                    f"run {run_id} pinned {name}@{version}, which is no longer registered; "
                    "start a new run instead (accord runs rerun)"
                )
            contracts[name] = contract
        spec = self._registry.workflow_spec(record)
        reused = machine.reusable_steps(spec, snapshot.steps, from_step)
        key = f"request:{request_id}" if request_id else ""
        if key:
            existing = await self._store.find_run(original.workflow, principal.actor, key)
            if existing is not None:
                return await self._view(existing.run_id), False
        retry = _Retry(original, contracts, reused)
        try:
            view = await self._start(
                principal, record, copy.deepcopy(original.input), key, "", [], {}, retry=retry
            )
        except IdempotencyConflict as taken:
            return await self._view(taken.run_id), False
        return view, True

    async def cancel_run(self, principal: Principal, run_id: str, reason: str) -> RunView:
        stored = await self._store.get_run(run_id)
        if stored is None:
            raise NotFoundError(f"run {run_id} does not exist")
        authz.may_control(principal, stored, "cancel")

        def cancel(state: RunState, tr: Transition) -> None:
            if state.record.status in RUN_TERMINAL:
                return
            machine.cancel(state, principal.actor, reason, tr)
            tr.audit.append(
                AuditRecord(
                    at_ms=tr.now,
                    actor=principal.actor,
                    action="run.cancel",
                    object=run_id,
                    owner_team=state.record.team,
                    platform_intervention=principal.intervenes_on(state.record.team),
                    details={"reason": reason},
                )
            )

        if stored.status not in RUN_TERMINAL:
            await self._transact(run_id, cancel)
        return await self._view(run_id)

    async def answer_step(
        self,
        principal: Principal,
        run_id: str,
        step_id: str,
        action: str,
        payload: Any = None,
        comment: str = "",
    ) -> RunView:
        """Answer a waiting step: ``action`` is ``approve`` or ``reject`` (an approval) or
        ``signal`` (a signal, with ``payload`` checked against its schema). Only the teams the
        step names and the workflow's owner may (docs/workflows.md, "Waiting steps"). Answering
        again exactly as the step was answered (a client's retry) changes nothing."""
        stored = await self._store.get_run(run_id)
        if stored is None:
            raise NotFoundError(f"run {run_id} does not exist")
        # A team that takes no part learns nothing of the run's steps (the teams a waiting step
        # names take part in its runs).
        authz.may_see(principal, stored)
        workflow = await self._registry.workflow_version(stored.workflow, stored.workflow_version)
        spec = self._registry.workflow_spec(workflow) if workflow is not None else None
        step_spec = spec.steps.get(step_id) if spec is not None else None
        if step_spec is None:
            raise NotFoundError(f"run {run_id} ({stored.workflow}) has no step {step_id}")
        wait = step_spec.wait
        if wait is None:
            raise FailedPreconditionError(
                f"step {step_id} of run {run_id} calls {step_spec.contract}; only a waiting step "
                "(wait_for) is approved, rejected or signalled"
            )
        authz.may_answer(principal, stored, step_id, wait)
        if wait.kind == WAIT_APPROVAL and action not in ("approve", "reject"):
            raise FailedPreconditionError(
                f"step {step_id} waits for an approval: approve or reject it (accord runs approve|reject)"
            )
        if wait.kind == WAIT_SIGNAL and action != "signal":
            raise FailedPreconditionError(
                f"step {step_id} waits for the signal {wait.name}: send it with accord runs signal "
                f"{run_id} {step_id} --data JSON"
            )
        by = principal.actor
        if wait.kind == WAIT_APPROVAL:
            output: Any = machine.approval_output(action == "approve", by, comment)
        else:
            if wait.schema is not None:
                violations = await self._registry.checks.validate(
                    f"the signal {wait.name}", wait.schema, payload, "signal"
                )
                if violations:
                    raise InvalidArgumentError(
                        f"the payload of signal {wait.name} does not match its schema",
                        [str(v) for v in violations],
                    )
            output = payload

        def answer(state: RunState, tr: Transition) -> str:
            step = state.steps[step_id]
            if state.record.status in RUN_TERMINAL or step.status != STEP_RUNNING:
                return step.status
            machine.answer(state, step_id, output, tr, self._limits)
            tr.audit.append(
                AuditRecord(
                    at_ms=tr.now,
                    actor=principal.actor,
                    action=f"run.{action}",
                    object=f"{run_id}/{step_id}",
                    owner_team=state.record.team,
                    platform_intervention=principal.intervenes_on(state.record.team),
                    details={"comment": comment} if comment else {},
                )
            )
            return ""

        try:
            found = await self._transact(run_id, answer)
        except _Gone:
            raise NotFoundError(f"run {run_id} does not exist") from None
        view = await self._view(run_id)
        if found:
            step = next((s for s in view.steps if s.step_id == step_id), None)
            same = step is not None and step.status == STEP_SUCCEEDED and _same_answer(step.output, output)
            if not same:
                if view.run.status in RUN_TERMINAL and found not in (STEP_SUCCEEDED,):
                    why = f"the run is {view.run.status}"
                elif found == STEP_PENDING:
                    why = "it is not waiting yet (the steps it reads have not finished)"
                else:
                    why = f"it was already answered or ended ({found})"
                raise FailedPreconditionError(f"step {step_id} of run {run_id} cannot be answered: {why}")
        return view

    async def get_run(self, principal: Principal, run_id: str) -> RunView:
        view = await self._view(run_id)
        authz.may_see(principal, view.run)
        return view

    async def list_runs(self, principal: Principal, query: RunFilter) -> list[RunRecord]:
        if not principal.admin:
            query = RunFilter(**{**query.__dict__, "visible_to": principal.team})
        return await self._store.list_runs(query)

    async def watch(
        self, principal: Principal, run_id: str, *, coalesce_s: float = 0.0
    ) -> AsyncIterator[RunView]:
        """The run now, then again after every change; ends right after yielding it terminal.
        ``coalesce_s``: after a view, changes within that time are yielded as one view at its
        end (the terminal run at once): a watcher of a fast run gets a message per window, not
        one per transition (docs/architecture.md, "Watching a run").

        Consume each view before awaiting anything: a live run's view shares the engine's
        records, which later transitions change in place.
        """
        loop = asyncio.get_running_loop()
        with self._listening(run_id) as watch:
            view = await self.get_run(principal, run_id)
            while True:
                # Decide from the status being yielded, not from view.run after the consumer
                # resumes us: by then the shared record may have turned terminal, and stopping
                # on that would end the stream without ever sending the terminal run.
                terminal = view.run.status in RUN_TERMINAL
                seen_version = view.run.version
                yield view
                if terminal:
                    return
                yielded = loop.time()
                await self._changed(run_id, watch.any, seen_version)
                # The window: woken by the run's end only (or another coordinator's news), not by
                # each change in it.
                remaining = yielded + coalesce_s - loop.time()
                if remaining > 0:
                    watch.ended.clear()
                    if not self._finished_here(run_id):
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(watch.ended.wait(), remaining)
                watch.any.clear()
                view = await self._view(run_id)

    async def wait_ended(self, principal: Principal, run_id: str, seconds: float) -> RunView:
        """The run once it has ended, or as it is after ``seconds``, whichever comes first
        (StartRun's ``wait_ms``). Woken by the run's end alone, not by each change on the way
        (docs/architecture.md, "Watching a run"). As with ``watch``, consume the view before
        awaiting anything."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with self._listening(run_id) as watch:
            view = await self.get_run(principal, run_id)
            while view.run.status not in RUN_TERMINAL:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed(run_id, watch.ended, view.run.version), remaining)
                watch.ended.clear()
                view = await self._view(run_id)
            return view

    @contextlib.contextmanager
    def _listening(self, run_id: str) -> Iterator[_Watch]:
        """A watcher of the run's changes while in the block. Enter it before the first read of
        the run: a transition committed while that read awaits the store still wakes it."""
        watch = _Watch()
        self._watchers.setdefault(run_id, set()).add(watch)
        try:
            yield watch
        finally:
            watchers = self._watchers.get(run_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[run_id]

    def _finished_here(self, run_id: str) -> bool:
        """Whether the run may have finished, by this process's cache alone: a finished run
        leaves it, and so does one another coordinator changed."""
        state = self._runs.get(run_id)
        return state is None or state.record.status in RUN_TERMINAL

    async def _view(self, run_id: str) -> RunView:
        state = self._runs.get(run_id) or self._recently_ended(run_id)
        if state is None:
            snapshot = await self._store.load_run(run_id)
            if snapshot is None:
                raise NotFoundError(f"run {run_id} does not exist")
            if snapshot.run.status in RUN_TERMINAL:
                contracts: dict[str, Contract] = {}
                for name, version in snapshot.run.pinned.items():
                    contract = await self._registry.contract(name, version)
                    if contract is not None:
                        contracts[name] = contract
                return snapshot_view(snapshot, contracts)
            # A live run this process has not touched yet: its state tells why its steps wait.
            try:
                state = await self._state(run_id)
            except _Gone:
                raise NotFoundError(f"run {run_id} does not exist") from None
            except NotFoundError:  # it could not go on, and failed: show it as it is now
                snapshot = await self._store.load_run(run_id) or snapshot
                return snapshot_view(snapshot, {})
        return await self._state_view(state)

    async def _state_view(self, state: RunState) -> RunView:
        team = state.record.caller_team
        limit = self._limited(team)
        held = (limit, self._inflight.get(team, 0)) if limit else None
        # The owners' limits of the contracts this run's offered tasks wait for (the newest
        # version of the major says it, as for polls: ``_contract_limit``).
        capped: dict[str, tuple[int, int]] = {}
        # A copy: a limit read from the registry awaits, and a transition committed meanwhile (a
        # completion starting the next step, a timeout) changes the run's current attempts.
        for attempt_id in list(state.current.values()):
            attempt = state.attempts.get(attempt_id)
            if attempt is None or attempt.status != ATTEMPT_SCHEDULED or attempt.contract in capped:
                continue
            contract_limit = await self._contract_limit(attempt.contract, attempt.major)
            if contract_limit:
                capped[attempt.contract] = (contract_limit, self._inflight_contracts.get(attempt.contract, 0))
        return state_view(state, self._dispatcher, self._settings.default_fan_out, now_ms(), held, capped)

    # ================= runs: the agents' side =================

    async def poll(
        self, principal: Principal, agent_id: str, only: list[QueueKey], wait_s: float
    ) -> Assignment | None:
        """The oldest task offered on the agent's queues (``only`` narrows them), claimed for it;
        waits up to ``wait_s`` for one."""
        agent = authz.registered_agent(principal, agent_id, self._dispatcher.agent(agent_id))
        keys = [(b.contract, b.major) for b in agent.bindings]
        if only:
            keys = [k for k in keys if k in only]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        with self._dispatcher.listen(agent_id, keys) as waiter:
            woken = False
            while True:
                offers: list[OfferRecord] = []
                if keys and (woken or not self._dispatcher.known_empty(keys)):
                    read_since = time.monotonic()
                    offers = await self._look(await self._open_keys(keys))
                    if not offers:
                        self._dispatcher.read_empty(keys, read_since)
                passed_by = False
                for offer in offers:
                    if waiter.reserved or waiter.handed:
                        break  # a commit is claiming a task for this very poll
                    if offer.attempt_id in self._claiming:
                        passed_by = True  # another poll here is claiming it: do not race it
                        continue
                    self._claiming.add(offer.attempt_id)
                    claiming = asyncio.ensure_future(self._claim_offer(offer, agent_id))
                    try:
                        assignment = await asyncio.shield(claiming)
                    except asyncio.CancelledError:
                        # The poll ended (its agent left) while the claim was being written: once
                        # it is, give the task back rather than leave it to the lease. Abandoned
                        # until then: the claim leaves ``_claiming`` as it ends, a turn of the
                        # loop before its callbacks run, and ``stop`` must not end in between.
                        self._abandoned.add(offer.attempt_id)
                        claiming.add_done_callback(
                            functools.partial(self._claim_lost, offer.attempt_id, agent_id)
                        )
                        raise
                    if assignment is not None:
                        return assignment
                    # Taken meanwhile (by another coordinator): more may wait behind what was read.
                    passed_by = True
                if not waiter.handed:
                    remaining = deadline - loop.time()
                    if remaining <= 0 and not waiter.reserved:
                        return None
                    # Other coordinators' offers wake it (hints); should one be lost, it reads
                    # the store again after ``replica_poll_s``. Having passed by offers others
                    # were claiming, it looks again in a moment: those claims may fail, and more
                    # offers may wait behind the ones it read.
                    pause = _PASSED_BY_S if passed_by else self._fallback_s
                    await waiter.wait(max(0.0, min(remaining, pause)))
                    woken = True
                handed = waiter.take()
                if handed:
                    cached = self._runs.get(_run_of(handed))
                    if cached is not None:
                        # Claimed in a commit of this process a moment ago: its run is cached
                        # and nothing needs awaiting (a task and its turns of the loop fewer on
                        # every hop's path).
                        return self._assignment(cached, handed, agent_id)
                    answering = asyncio.ensure_future(self._handed(handed, agent_id))
                    try:
                        return await asyncio.shield(answering)
                    except asyncio.CancelledError:
                        # The poll ended (its agent left, its v2 stream closed) while the task
                        # claimed for it was being read: give it back rather than leave it to
                        # the lease.
                        self._handoff_lost(handed, agent_id)
                        raise
                if loop.time() >= deadline:
                    return None

    async def _look(self, keys: list[QueueKey]) -> list[OfferRecord]:
        """The oldest offers on ``keys``, read once for every poll here that looks at the same
        queues in the same turn of the event loop: a v2 stream's credit for several slots starts
        as many polls at once, and one read of a few offers each costs a fraction of a read per
        poll. Each poll then claims the first offer no other poll here is claiming."""
        queues = tuple(keys)
        look = self._looks.get(queues)
        if look is None:
            look = self._looks[queues] = _Look()
            look.read = asyncio.ensure_future(self._read_look(queues, look))
        look.polls += 1
        assert look.read is not None
        return await asyncio.shield(look.read)

    async def _read_look(self, queues: tuple[QueueKey, ...], look: _Look) -> list[OfferRecord]:
        # Runs a turn of the loop after the first poll asked: every poll of that turn has joined.
        # Polls asking from now on make a new look.
        del self._looks[queues]
        spare = _OFFERS_SPARE if self._store.shared else _OFFERS_SPARE_ALONE
        # Not those other polls here are claiming (nor any that start meanwhile: passed by in
        # ``poll``).
        return await self._store.offers(
            list(queues), look.polls + spare, await self._held_teams(), frozenset(self._claiming)
        )

    def _limited(self, team: str) -> int:
        """The caller team's concurrency limit (0: none)."""
        return self.team_limits(team).max_concurrency if team else 0

    async def _held_teams(self) -> frozenset[str]:
        """The teams at their concurrency limit now: polls pass by their offers, so a limited
        team never delays another team's steps (docs/production.md, "Team limits")."""
        if not any(limits.max_concurrency for limits in self._team_limits.values()):
            return frozenset()
        self._inflight = await self._store.inflight_counts()
        return frozenset(
            team
            for team, limits in self._team_limits.items()
            if limits.max_concurrency and self._inflight.get(team, 0) >= limits.max_concurrency
        )

    async def _contract_limit(self, name: str, major: int) -> int:
        """The owner's limit on contract ``name`` (its newest version of ``major``; 0: none),
        looked up at most once a second per queue: polls ask on every look."""
        now = time.monotonic()
        cached = self._contract_limits.get((name, major))
        if cached is not None and cached[0] > now:
            return cached[1]
        contract = await self._registry.resolve(name, f">={major}.0.0,<{major + 1}.0.0")
        limit = (contract.max_concurrency or 0) if contract is not None else 0
        self._contract_limits[(name, major)] = (now + 1.0, limit)
        return limit

    async def _frees_a_capped_slot(self, state: RunState, ended: list[str]) -> bool:
        """Whether one of the attempts ``ended`` (they stopped running) is of a contract with an
        owner's limit: then a held offer may go now."""
        for attempt_id in ended:
            attempt = state.attempts.get(attempt_id)
            if attempt is not None and await self._contract_limit(attempt.contract, attempt.major):
                return True
        return False

    async def _open_keys(self, keys: list[QueueKey]) -> list[QueueKey]:
        """``keys`` but those of contracts running at their owner's limit (polls do not look at
        those queues until a slot frees)."""
        limits = {key: await self._contract_limit(*key) for key in keys}
        if not any(limits.values()):
            return keys
        self._inflight_contracts = await self._store.inflight_of_contracts()
        return [k for k in keys if not limits[k] or self._inflight_contracts.get(k[0], 0) < limits[k]]

    async def _claim_offer(self, offer: OfferRecord, agent_id: str) -> Assignment | None:
        """Claim ``offer`` (the caller put it in ``_claiming``, before this task first ran, so no
        other poll of this process starts on it meanwhile). An offer of a contract with an owner's
        limit is claimed only while the contract runs below it, one claim of it at a time here;
        the claim's commit checks the limit again (``Changes.inflight_caps``), so a claim through
        another coordinator that took the last slot first makes this one fail, not go over."""
        try:
            contract_limit = await self._contract_limit(offer.contract, offer.major)
            if contract_limit:
                lock = self._contract_claims.setdefault(offer.contract, asyncio.Lock())
                async with lock:
                    self._inflight_contracts = await self._store.inflight_of_contracts()
                    if self._inflight_contracts.get(offer.contract, 0) >= contract_limit:
                        return None
                    caps = [(INFLIGHT_CONTRACT, offer.contract, contract_limit)]
                    return await self._claim_team_offer(offer, agent_id, caps)
            return await self._claim_team_offer(offer, agent_id, [])
        finally:
            self._claiming.discard(offer.attempt_id)

    async def _claim_team_offer(
        self, offer: OfferRecord, agent_id: str, caps: list[tuple[str, str, int]]
    ) -> Assignment | None:
        """Claim an offer of a team with a concurrency limit only while the team is below it,
        one claim of the team at a time here, counting again under its lock (and in the
        claim's commit, with ``caps``)."""
        limit = self._limited(offer.caller_team)
        if not limit:
            return await self._claim(offer, agent_id, caps)
        lock = self._team_claims.setdefault(offer.caller_team, asyncio.Lock())
        async with lock:
            self._inflight = await self._store.inflight_counts()
            if self._inflight.get(offer.caller_team, 0) >= limit:
                return None
            return await self._claim(offer, agent_id, [*caps, (INFLIGHT_TEAM, offer.caller_team, limit)])

    async def _claim(
        self, offer: OfferRecord, agent_id: str, caps: list[tuple[str, str, int]] | None = None
    ) -> Assignment | None:
        def claim(state: RunState, tr: Transition) -> bool:
            attempt = state.attempts.get(offer.attempt_id)
            if attempt is not None and attempt.status != ATTEMPT_SCHEDULED:
                # Another poll took it (or it ended): the transition that did so withdrew its
                # offer. Nothing to write.
                return False
            if (
                attempt is None
                or attempt.status != ATTEMPT_SCHEDULED
                or state.record.status in RUN_TERMINAL
                or state.current.get(attempt.step_id) != attempt.attempt_id
            ):
                # A stale offer (should not be): take it away, but only from the run as it is
                # stored. The state may be this process's cache while another coordinator moved
                # the run on and offered this very attempt: the version check refuses the
                # withdrawal then, and the run is read again.
                tr.lock(state.record)
                tr.withdraw(offer.attempt_id)
                return False
            machine.claim(state, attempt, agent_id, tr)
            for kind, key, limit in caps or ():
                tr.cap(kind, key, limit)
            return True

        try:
            # Nothing to do means the attempt is no longer scheduled, which no newer state of the
            # run undoes (an attempt this state lacks is withdrawn under the run's version).
            claimed = await self._transact(offer.run_id, claim, recheck=False)
        except _Gone:
            return None
        except FailedPreconditionError:
            return None  # the run kept changing: another poll will take it
        except LimitReached as reached:
            # Another claim (through another coordinator, say) took the last slot first: the
            # task stays offered, and polls pass it by until a slot frees.
            logger.debug("claim of %s refused: %s", offer.attempt_id, reached)
            return None
        if not claimed:
            return None
        return await self._handed(offer.attempt_id, agent_id)

    async def _handed(self, attempt_id: str, agent_id: str) -> Assignment | None:
        """The assignment of an attempt claimed for ``agent_id`` (None if it moved on since)."""
        try:
            state = await self._state(_run_of(attempt_id))
        except _Gone:
            return None
        return self._assignment(state, attempt_id, agent_id)

    def _assignment(self, state: RunState, attempt_id: str, agent_id: str) -> Assignment | None:
        """``_handed`` with the run's state in hand."""
        attempt = state.attempts.get(attempt_id)
        if attempt is None or attempt.status != ATTEMPT_RUNNING or attempt.agent_id != agent_id:
            return None
        step = state.steps[attempt.step_id]
        _, timeouts = policy_from_json(step.policy)
        run = state.record
        trace_context = {"traceparent": format_traceparent(run.trace_id, attempt.span_id, run.sampled)}
        return Assignment(run, step, attempt, timeouts, trace_context)

    def _claim_lost(
        self, attempt_id: str, agent_id: str, claiming: asyncio.Future[Assignment | None]
    ) -> None:
        """The claim of a poll that ended has ended: give the task back if this claim took it.
        One that found it taken took nothing. The claim that took it may be another poll's of the
        same agent, through another coordinator (an agent's slots poll several replicas while
        one stops), and its task may be running: given back, it would run twice."""
        if not claiming.cancelled() and claiming.exception() is None and claiming.result() is not None:
            self._handoff_lost(attempt_id, agent_id)
        self._abandoned.discard(attempt_id)

    def _handoff_lost(self, attempt_id: str, agent_id: str = "") -> None:
        """A poll ended before it could answer with the attempt claimed for it (by ``agent_id``;
        "" = whichever agent): give it back (as a release: that attempt ends, a new one is
        offered), so it does not wait for its lease. ``stop`` waits for it."""
        task = asyncio.get_running_loop().create_task(self._give_back(attempt_id, agent_id), name="give-back")
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    def hand_back(self, attempt_id: str, agent_id: str) -> None:
        """A task claimed for ``agent_id`` that never reached it (its v2 stream ended first, or
        its PollTask's token was refused before the answer): given back at once, in the
        background (``stop`` waits for it)."""
        self._handoff_lost(attempt_id, agent_id)

    async def _give_back(self, attempt_id: str, agent_id: str) -> None:
        def give_back(state: RunState, tr: Transition) -> None:
            attempt = _running(state, attempt_id)
            if attempt is None or (agent_id and attempt.agent_id != agent_id):
                return
            error = TaskFailure(
                "Released", f"the poll of agent {attempt.agent_id} ended before it got the task"
            )
            machine.release(state, attempt, error, tr)

        try:
            await self._transact(_run_of(attempt_id), give_back)
        except _Gone:
            pass
        except Exception:  # the lease timer still recovers it
            logger.exception("giving back attempt %s failed", attempt_id)

    async def _attempt(self, principal: Principal, attempt_id: str) -> AttemptRecord | None:
        """The attempt, if it exists; another team's is refused, naming its owner. Read from the
        store unless this process's cache has it running: the cache may be behind another
        coordinator that claimed it, and is never the reason to turn an agent away."""
        state = self._runs.get(_run_of(attempt_id))
        attempt = state.attempts.get(attempt_id) if state is not None else None
        if attempt is not None and attempt.status != ATTEMPT_RUNNING and self._store.shared:
            # Another coordinator may have claimed it since (its hint not here yet): ask the store.
            attempt = None
        if attempt is None:
            attempt = await self._store.get_attempt(attempt_id)
        if attempt is not None:
            authz.may_report(principal, attempt)
        return attempt

    def agent_seen(self, agent_id: str) -> tuple[bool, float | None]:
        """Whether an agent is alive and how many seconds ago it was last heard from (the
        dispatcher's ``seen``)."""
        return self._dispatcher.seen(agent_id)

    async def heartbeat(self, principal: Principal, agent_id: str, attempt_id: str) -> HeartbeatAnswer:
        authz.may_act_as(principal, agent_id, self._dispatcher.agent(agent_id))
        self._dispatcher.touch(agent_id)
        attempt = await self._attempt(principal, attempt_id)
        if attempt is None:
            return HeartbeatAnswer(False, True, 0)
        if attempt.status != ATTEMPT_RUNNING:
            # Cancelled (its run was cancelled): stop; anything else: the lease is lost.
            cancelled = attempt.status == ATTEMPT_CANCELLED
            return HeartbeatAnswer(cancelled, not cancelled, 0)
        try:
            state = await self._state(attempt.run_id)
        except _Gone:
            return HeartbeatAnswer(False, True, 0)
        period = machine.heartbeat_period_ms(state, attempt)
        lease = now_ms() + period
        if period and not await self._store.extend_lease(attempt_id, lease):
            # Its lease timer is gone: the attempt ended meanwhile (timed out, cancelled).
            current = await self._store.get_attempt(attempt_id)
            cancelled = current is not None and current.status == ATTEMPT_CANCELLED
            return HeartbeatAnswer(cancelled, not cancelled, 0)
        return HeartbeatAnswer(state.record.cancel_requested, False, lease)

    async def complete(
        self,
        principal: Principal,
        agent_id: str,
        attempt_id: str,
        output: Any,
        request_id: str,
        *,
        output_size: int | None = None,
    ) -> bool:
        """``output_size``: the length of the JSON text ``output`` was read from, when there was
        one (else it is measured by encoding it again)."""
        authz.may_act_as(principal, agent_id, self._dispatcher.agent(agent_id))
        self._dispatcher.touch(agent_id)

        # A large output is validated first, here when that is quick, else in a worker; a small
        # one in the transition (within the inline budget: a costly schema still goes to a worker).
        size = payload_size(output) if output_size is None else output_size
        checked = await self._output_checked(attempt_id, output, size) if size > INLINE_BYTES else None
        emitted = await self._emitted(attempt_id, output)

        def complete(state: RunState, tr: Transition) -> bool:
            attempt = _running(state, attempt_id)
            if attempt is None:
                return False
            contract = state.contracts[attempt.contract]
            if checked is not None and checked[0] == contract.ref:
                violation = checked[1]
            else:
                violation = machine.output_violation(contract, output)
            if violation is not None:
                machine.attempt_failed(state, attempt, ATTEMPT_FAILED, violation, tr)
            else:
                machine.attempt_succeeded(state, attempt, output, tr, self._limits)
                if emitted is not None and emitted[0] == contract.ref:
                    # Stored in this commit: the step's success and its event are one fact.
                    tr.events.append(emitted[1])
                    tr.audit.append(emitted[2])
            if request_id:
                attempt.report = f"complete:{request_id}"
            _audit_intervention(principal, "task.complete", attempt, agent_id, tr)
            return True

        try:
            return await self._report(principal, attempt_id, ("complete", request_id), complete)
        except InlineBudgetSpent:
            # Validating the output against a costly schema ran over the inline budget (nothing
            # was changed): validated in a worker, then applied with that verdict.
            checked = await self._output_checked(attempt_id, output)
            return await self._report(principal, attempt_id, ("complete", request_id), complete)

    async def _emitted(self, attempt_id: str, output: Any) -> tuple[str, EventRecord, AuditRecord] | None:
        """The event a successful attempt's contract emits (``emits:``), made before the
        transition (the event contract is looked up, the payload validated, off the
        transaction) and stored in its commit: ``(contract ref, event, its audit entry)``. None
        when the contract emits none, or when the payload cannot be made or does not fit the
        event contract: logged, and the step succeeds all the same."""
        run_id = _run_of(attempt_id)
        try:
            state = await self._state(run_id)
            attempt = state.attempts.get(attempt_id)
            if (attempt is None or attempt.step_id not in state.steps) and self._store.shared:
                # Another coordinator made the attempt after this one cached the run.
                self._runs.pop(run_id, None)
                state = await self._state(run_id)
                attempt = state.attempts.get(attempt_id)
        except _Gone:
            return None
        contract = state.contracts.get(attempt.contract) if attempt is not None else None
        if attempt is None or contract is None or contract.emits is None:
            return None
        emits = contract.emits
        run = state.record
        step = state.steps.get(attempt.step_id)
        payload: Any = None
        try:
            event_contract = await self._registry.resolve(emits.event, f"^{emits.major}")
            if event_contract is None or event_contract.kind != "event":
                raise NotFoundError(f"no event contract {emits.ref} is registered")
            payload = evaluate(
                emits.payload, {"input": step.input if step else None, "output": output}, roots=EMITS_ROOTS
            )
            violations = await self._registry.checks.validate(
                f"the payload of {event_contract.ref}", event_contract.input_schema, payload, "event payload"
            )
            if violations:
                raise InvalidArgumentError(
                    f"the payload does not match {event_contract.ref}: "
                    + "; ".join(str(v) for v in violations[:5])
                )
        except AccordError as exc:
            # Why, without the values: a schema violation quotes the value it refuses, which may
            # be sensitive (docs/concepts.md, "Sensitive data follows the data").
            quoted = scalar_values(payload, step.input if step else None, output)
            logger.warning(
                "step %s of run %s succeeded, but %s emits %s and it was not published: %s",
                attempt.step_id,
                run.run_id,
                contract.ref,
                emits.ref,
                scrub_text(str(exc), quoted),
                extra={"trace_id": run.trace_id},
            )
            return None
        # The payload fields that carry a sensitive value: those the event contract marks, and
        # those filled from a field the emitting contract marks, or from its input's taint in
        # this run (the run's flows into the step's input).
        base = attempt.step_id.partition("[")[0]
        prefix = f"steps.{base}.input"
        tainted = [
            "input" + flow[len(prefix) :]
            for flow in await self._registry.run_flows(run)
            if flow == prefix or flow.startswith(prefix + ".")
        ]
        sensitive = sorted(set(event_contract.sensitive) | set(emitted_sensitive(contract, tainted)))
        at = now_ms()
        # One event per successful attempt, whatever the retries of its report.
        event_id = "evt-" + hashlib.sha256(f"emits\0{attempt_id}".encode()).hexdigest()[:16]
        event = EventRecord(
            event_id=event_id,
            contract=event_contract.name,
            contract_version=event_contract.version,
            team=event_contract.team,
            payload=payload,
            published_ms=at,
            trace_context={"traceparent": format_traceparent(run.trace_id, attempt.span_id, run.sampled)},
            source_run=run.run_id,
            sensitive=tuple(sensitive),
        )
        audit = AuditRecord(
            at_ms=at,
            actor=contract.team,
            action="event.publish",
            object=event_id,
            owner_team=event_contract.team,
            details={"contract": event_contract.ref, "source_run": run.run_id, "step": attempt.step_id},
        )
        return contract.ref, event, audit

    async def _output_checked(
        self, attempt_id: str, output: Any, size: int | None = None
    ) -> tuple[str, TaskFailure | None] | None:
        """An output validated before the transition, which uses the answer: ``(contract ref,
        violation)``; None when the attempt or its contract is not found (the transition then
        decides). A large one (``size`` bytes) is validated here when that is quick
        (``validate_large_inline``); else, and with no ``size`` (a small output whose schema ran
        over the inline budget), in a worker process (coordinator/checks.py)."""
        cached = self._runs.get(_run_of(attempt_id))
        attempt = cached.attempts.get(attempt_id) if cached is not None else None
        if attempt is None:  # not cached (or made by another coordinator since): as stored
            attempt = await self._store.get_attempt(attempt_id)
            if attempt is None:
                return None
        try:
            contract = (await self._state(attempt.run_id)).contracts.get(attempt.contract)
        except _Gone:
            return None
        if contract is None:
            return None
        if size is not None:
            violations = validate_large_inline(contract.output_schema, output, "output", size)
            if violations is not None:
                return contract.ref, machine.output_failure(contract, violations)
        try:
            violation = await self._registry.checks.run(
                f"validating the output of {contract.ref}",
                INLINE_BYTES + 1,
                machine.output_violation,
                contract,
                output,
            )
        except FailedPreconditionError as exc:
            violation = TaskFailure(
                "ContractViolation", f"the output of {contract.ref} could not be validated: {exc}", False
            )
        return contract.ref, violation

    async def fail(
        self, principal: Principal, agent_id: str, attempt_id: str, error: TaskFailure, request_id: str
    ) -> bool:
        authz.may_act_as(principal, agent_id, self._dispatcher.agent(agent_id))
        self._dispatcher.touch(agent_id)

        def fail(state: RunState, tr: Transition) -> bool:
            attempt = _running(state, attempt_id)
            if attempt is None:
                return False
            machine.attempt_failed(state, attempt, ATTEMPT_FAILED, error, tr)
            if request_id:
                attempt.report = f"fail:{request_id}"
            _audit_intervention(principal, "task.fail", attempt, agent_id, tr)
            return True

        return await self._report(principal, attempt_id, ("fail", request_id), fail)

    async def release(self, principal: Principal, agent_id: str, attempt_id: str, reason: str) -> bool:
        authz.may_act_as(principal, agent_id, self._dispatcher.agent(agent_id))

        def release(state: RunState, tr: Transition) -> bool:
            attempt = _running(state, attempt_id)
            if attempt is None:
                return False
            error = TaskFailure(
                "Released", f"agent {agent_id} released the task: {reason or 'no reason given'}"
            )
            machine.release(state, attempt, error, tr)
            _audit_intervention(principal, "task.release", attempt, agent_id, tr)
            return True

        return await self._report(principal, attempt_id, ("release", ""), release)

    async def _report(
        self,
        principal: Principal,
        attempt_id: str,
        request: tuple[str, str],
        change: Callable[[RunState, Transition], bool],
    ) -> bool:
        """An agent's word on its attempt: applied while the attempt is the running one; else
        accepted only as the replay of a request already applied (``request``)."""
        attempt = await self._attempt(principal, attempt_id)
        accepted = False
        if attempt is not None and attempt.status == ATTEMPT_RUNNING:
            try:
                accepted = await self._transact(attempt.run_id, change)
            except _Gone:
                accepted = False
        if accepted or not request[1]:
            return accepted
        # A report sent again (its answer was lost): accepted when it is the one that ended the
        # attempt, as the attempt records. Reports applied before attempts recorded it have a
        # request row.
        current = await self._store.get_attempt(attempt_id)
        if current is not None and current.report == ":".join(request):
            return True
        answer = await self._store.get_request(*request)
        return bool(answer and answer.get("accepted"))

    # ================= timers =================

    async def _fire(self, timer: TimerRecord) -> None:
        if timer.kind == TIMER_LEASE:
            # Agents that outlived a restart of the coordinators (or an outage of the store) get
            # one heartbeat period from it: a lease due while no coordinator could take
            # heartbeats is not held against them.
            state = await self._state_or_none(timer.run_id)
            attempt = state.attempts.get(timer.key) if state is not None else None
            if state is not None and attempt is not None and attempt.status == ATTEMPT_RUNNING:
                grace = self._started_ms + machine.heartbeat_period_ms(state, attempt)
                if now_ms() < grace:
                    await self._store.extend_lease(timer.key, grace)
                    return
        try:
            if timer.kind == TIMER_CHECK_INPUT:
                # The verdict comes from the state as read before the check; if the transition
                # finds the step waiting on a newer one, the check is made again on that.
                for _ in range(3):
                    if not await self._transact(
                        timer.run_id, self._input_checked(timer, await self._check_input(timer))
                    ):
                        break
            else:
                await self._transact(
                    timer.run_id, lambda state, tr: machine.fire(state, timer, tr, self._limits)
                )
        except _Gone:
            # Its run is gone: the timer goes too.
            tr = Transition(now_ms())
            tr.fired(timer)
            await self._store.apply(tr.changes())
        except NotFoundError as exc:  # the run could not go on and failed (ResumeError), timers and all
            logger.warning("timer %s %s: %s", timer.kind, timer.key, exc)

    @staticmethod
    def _input_checked(
        timer: TimerRecord, verdict: tuple[TaskFailure | None] | None
    ) -> Callable[[RunState, Transition], bool]:
        def change(state: RunState, tr: Transition) -> bool:
            return machine.input_checked(state, timer, verdict, tr)

        return change

    async def _check_input(self, timer: TimerRecord) -> tuple[TaskFailure | None] | None:
        """The verdict on a step's large mapped input, validated in a worker process within the
        check budget (coordinator/checks.py) before the transition that starts the step:
        ``(None,)`` valid, ``(failure,)`` not; None when nothing waits for it (as read here)."""
        state = await self._state_or_none(timer.run_id)
        waiting = machine.waiting_input(state, timer) if state is not None else None
        if waiting is None:
            return None
        step, contract = waiting
        try:
            violations = await self._registry.checks.run(
                f"validating the mapped input of step {step.step_id} ({contract.ref})",
                INLINE_BYTES + 1,
                validate_payload,
                contract.input_schema,
                step.input,
                "input",
            )
        except FailedPreconditionError as exc:
            return (
                TaskFailure(
                    "ContractViolation",
                    f"the mapped input of {contract.ref} could not be validated: {exc}",
                    False,
                ),
            )
        return (machine.input_violation(contract, violations) if violations else None,)

    async def _state_or_none(self, run_id: str) -> RunState | None:
        try:
            return await self._state(run_id)
        except _Gone:
            return None


def _checked_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for rule, reason in overrides.items():
        if rule not in lifecycle.OVERRIDABLE:
            raise InvalidArgumentError(
                f"override '{rule}': no such rule; the rules a run may override: {', '.join(lifecycle.OVERRIDABLE)}"
            )
        checked[rule] = lifecycle.override_reason(rule, reason)
    return checked


def _sunset_rules(
    record: WorkflowRecord,
    spec: Workflow,
    contracts: Mapping[str, Contract],
    overrides: Mapping[str, str],
    actor: str,
) -> tuple[list[str], dict[str, tuple[str, str, list[str]]]]:
    """The warnings a new run carries for the deprecated versions it pins, and the overrides
    it uses (rule -> (reason, where it came from, what it overrode)). A version past its sunset
    refuses the run (FAILED_PRECONDITION) unless the start or the workflow file overrides
    ``sunset``; runs already started are not affected (docs/contracts.md, "Deprecation")."""
    today = lifecycle.today_utc()
    warnings: list[str] = []
    passed: list[Contract] = []
    for contract in contracts.values():
        if contract.deprecated is None:
            continue
        if lifecycle.sunset_passed(contract.deprecated, today):
            passed.append(contract)
        else:
            warnings.append(lifecycle.deprecation_warning(contract))
    if not passed:
        return warnings, {}
    reason, source = overrides.get("sunset", ""), "request"
    if not reason:
        reason, source = dict(spec.overrides).get("sunset", ""), "workflow file"
    if not reason:
        lines = []
        for contract in passed:
            assert contract.deprecated is not None
            use = (
                f"; use {contract.deprecated.replacement}"
                if contract.deprecated.replacement
                else "; it names no replacement"
            )
            lines.append(f"{contract.ref} passed its sunset {contract.deprecated.sunset}{use}")
        raise FailedPreconditionError(
            f"{record.name} v{record.version} calls {len(passed)} contract version(s) past their sunset, so new "
            f'runs are refused: {"; ".join(lines)}. Move to the replacement, or start it with --override sunset="reason" '
            '(a workflow file may say overrides: {sunset: "reason"}); the override is recorded',
            lines,
        )
    for contract in passed:
        assert contract.deprecated is not None
        warnings.append(
            f"{lifecycle.deprecation_warning(contract)}; the sunset has passed: started with an override "
            f"of sunset by {actor} ({source}): {reason}"
        )
    return warnings, {"sunset": (reason, source, [c.ref for c in passed])}


def _run_of(attempt_id: str) -> str:
    """Attempt ids are ``<run id>:<step id>:<number>``."""
    return attempt_id.split(":", 1)[0]


def _running(state: RunState, attempt_id: str) -> AttemptRecord | None:
    """The attempt while it is its step's running attempt."""
    attempt = state.attempts.get(attempt_id)
    if attempt is None or attempt.status != ATTEMPT_RUNNING:
        return None
    if state.current.get(attempt.step_id) != attempt_id or state.record.status in RUN_TERMINAL:
        return None
    return attempt


def _same_answer(stored: Any, answer: Any) -> bool:
    """Whether a waiting step's stored output is this answer (a client sending it again)."""
    if isinstance(stored, dict) and isinstance(answer, dict) and "approved" in answer:
        return stored.get("approved") == answer.get("approved") and stored.get("by") == answer.get("by")
    return _canonical(stored) == _canonical(answer)


def _canonical(value: Any) -> str:
    """A run input as comparable text: the same JSON value gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
