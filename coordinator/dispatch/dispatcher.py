"""Task queues per (contract, major) and long-poll matching.

Queues hold attempt ids only; the engine owns the attempts. An enqueue wakes every poller
waiting on that queue at once (asyncio events), so handing a task to an idle agent costs no
polling interval. The queues are in memory and rebuilt from the Store when the coordinator
starts; an attempt is enqueued only after its creation is durable.

Eager hand-off: when a transition creates an attempt while an agent is already waiting for its
queue, the engine ``reserve``s that waiting poll, records the attempt as claimed by that agent in
the SAME durable commit as the transition, and only then ``hand``s it over; the poll answers
without a claim commit of its own (one durable commit per hop instead of two). A reserved poll
neither takes another task nor times out until it is handed its task or ``unreserve``d.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coordinator.store.records import AgentRecord

QueueKey = tuple[str, int]  # (contract "team/name", major)


def queue_label(key: QueueKey) -> str:
    return f"{key[0]}@{key[1]}"


@dataclass
class AgentState:
    record: AgentRecord
    last_seen: float = 0.0  # monotonic; 0 = not seen since this coordinator started
    polling: int = 0
    in_flight: set[str] = field(default_factory=set)
    # monotonic: when a poll of it was cancelled (the agent stopped, crashed or lost its
    # connection); 0 once it polls again.
    left_at: float = 0.0

    @property
    def keys(self) -> list[QueueKey]:
        return [(b.contract, b.major) for b in self.record.bindings]


# How long an agent whose poll was cancelled still counts as serving: long enough for an agent
# that restarts its polls (a config reload) to poll again; a stopped agent is gone after it,
# not after the whole ``agent_alive_s`` (a busy agent that is not polling keeps that window).
LEFT_GRACE_S = 2.0


class Waiter:
    """One long poll waiting in ``next_attempt``."""

    __slots__ = ("agent_id", "ended", "event", "handed", "reserved")

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.event = asyncio.Event()
        self.reserved = False
        self.handed = ""  # an attempt already claimed for this poll (durable), to answer with
        self.ended = False


class Dispatcher:
    def __init__(self, *, agent_alive_s: float = 30.0) -> None:
        self._agent_alive_s = agent_alive_s
        self._queues: dict[QueueKey, deque[str]] = {}
        self._queued: dict[str, tuple[QueueKey, float]] = {}  # attempt id -> (queue, enqueued at)
        self._waiters: dict[QueueKey, dict[Waiter, None]] = {}  # insertion-ordered
        self.agents: dict[str, AgentState] = {}
        # Called with the attempt id when a poll that was handed a claimed attempt ends without
        # answering with it (cancelled): the engine gives the attempt back.
        self.on_lost: Callable[[str], None] = lambda attempt_id: None

    # ---------- agents ----------

    def register_agent(self, record: AgentRecord, *, seen: bool = True) -> AgentState:
        state = self.agents.get(record.agent_id)
        if state is None:
            state = AgentState(record)
            self.agents[record.agent_id] = state
        else:
            state.record = record
        if seen:
            state.last_seen = time.monotonic()
        return state

    def touch(self, agent_id: str) -> None:
        state = self.agents.get(agent_id)
        if state is not None:
            state.last_seen = time.monotonic()

    def _alive(self, state: AgentState, now: float) -> bool:
        if state.polling > 0:
            return True
        if state.left_at and now - state.left_at > LEFT_GRACE_S:
            return False  # its poll was cut off and it has not polled again: gone (or stopping)
        return state.last_seen > 0 and now - state.last_seen < self._agent_alive_s

    def serving(self, key: QueueKey) -> list[AgentState]:
        """Agents alive now that serve ``key``."""
        now = time.monotonic()
        return [a for a in self.agents.values() if key in a.keys and self._alive(a, now)]

    # ---------- queues ----------

    def enqueue(self, key: QueueKey, attempt_id: str) -> None:
        if attempt_id in self._queued:
            return
        self._queues.setdefault(key, deque()).append(attempt_id)
        self._queued[attempt_id] = (key, time.monotonic())
        for waiter in self._waiters.get(key, ()):
            waiter.event.set()

    def reserve(self, key: QueueKey) -> Waiter | None:
        """A poll waiting on ``key`` now, set aside for ``hand`` (None when none waits)."""
        for waiter in self._waiters.get(key, ()):
            if not waiter.reserved and not waiter.handed and not waiter.ended and not waiter.event.is_set():
                waiter.reserved = True
                return waiter
        return None

    def hand(self, waiter: Waiter, attempt_id: str) -> bool:
        """Answer the reserved poll with ``attempt_id`` (already claimed durably for its agent).
        False when the poll has ended meanwhile: the caller must give the attempt back."""
        waiter.reserved = False
        if waiter.ended:
            return False
        waiter.handed = attempt_id
        waiter.event.set()
        return True

    def unreserve(self, waiter: Waiter) -> None:
        waiter.reserved = False
        waiter.event.set()

    def remove(self, attempt_id: str) -> None:
        entry = self._queued.pop(attempt_id, None)
        if entry is not None:
            queue = self._queues.get(entry[0])
            if queue is not None:
                try:
                    queue.remove(attempt_id)
                except ValueError:
                    pass

    def queued_since(self, attempt_id: str) -> float | None:
        entry = self._queued.get(attempt_id)
        return None if entry is None else entry[1]

    def depth(self, key: QueueKey) -> int:
        return len(self._queues.get(key, ()))

    def _pop(self, keys: Iterable[QueueKey]) -> str | None:
        best: QueueKey | None = None
        best_at = 0.0
        for key in keys:
            queue = self._queues.get(key)
            if queue:
                at = self._queued[queue[0]][1]
                if best is None or at < best_at:
                    best, best_at = key, at
        if best is None:
            return None
        attempt_id = self._queues[best].popleft()
        del self._queued[attempt_id]
        return attempt_id

    async def next_attempt(self, agent_id: str, keys: list[QueueKey], wait_s: float) -> str | None:
        """The oldest queued attempt among ``keys``, or one handed over already claimed for this
        agent (see ``hand``); waits up to ``wait_s`` for one."""
        state = self.agents.get(agent_id)
        attempt_id = self._pop(keys)
        if attempt_id is not None or wait_s <= 0:
            return attempt_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        waiter = Waiter(agent_id)
        event = waiter.event
        for key in keys:
            self._waiters.setdefault(key, {})[waiter] = None
        if state is not None:
            state.polling += 1
            state.left_at = 0.0
        answered = False
        try:
            while True:
                if waiter.handed:
                    answered = True
                    return waiter.handed
                if waiter.reserved:
                    # A commit that claims an attempt for this poll is under way: wait for it.
                    await event.wait()
                    event.clear()
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return self._pop(keys)
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    if waiter.reserved or waiter.handed:
                        continue
                    return self._pop(keys)
                event.clear()
                if waiter.reserved or waiter.handed:
                    continue
                attempt_id = self._pop(keys)
                if attempt_id is not None:
                    return attempt_id
        except asyncio.CancelledError:
            if state is not None:
                state.left_at = time.monotonic()
            raise
        finally:
            waiter.ended = True
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.pop(waiter, None)
            if state is not None:
                state.polling -= 1
                state.last_seen = time.monotonic()
            if waiter.handed and not answered:
                self.on_lost(waiter.handed)
