"""The open long polls of agents, and which agents are alive: the in-memory half of dispatch.

Task offers themselves are durable (``Store.offers``, written in the transition that schedules an
attempt); what lives here is only what cannot outlive the process anyway: the agents' long polls
waiting for work, and when each agent was last seen. See docs/architecture.md, "Dispatch".

A poll ``listen``s on the queues it serves, reads the store's offers, and if there is none
``wait``s. Two things end the wait:

- ``offered(key)``: a transition committed an offer on that queue (a wake-up hint: the poll reads
  the store again; the store, not this hint, is the truth).
- Eager hand-off: a transition that creates an attempt while a poll is waiting for its queue
  ``reserve``s that poll, claims the attempt for the poll's agent in the SAME durable commit, and
  then ``hand``s it over; the poll answers with it without a commit of its own (one durable
  commit per hop, not two). A reserved poll neither takes another task nor times out until it is
  handed its task or ``unreserve``d. A poll that ends after it was handed an attempt it never
  answered with reports it through ``on_lost`` (the engine gives the attempt back).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from coordinator.store.records import AgentRecord

QueueKey = tuple[str, int]  # (contract "team/name", major)


def queue_label(key: QueueKey) -> str:
    return f"{key[0]}@{key[1]}"


@dataclass
class AgentPresence:
    """An agent as this process knows it: its registration and when it was last seen."""

    record: AgentRecord
    last_seen: float = 0.0  # monotonic; 0 = not seen since this coordinator started
    polling: int = 0  # open long polls now
    # monotonic: when a poll of it was cancelled (the agent stopped, crashed or lost its
    # connection); 0 once it polls again.
    left_at: float = 0.0
    # What other coordinators sharing the store say of it (``seen_elsewhere``), monotonic: alive
    # until ``elsewhere_until``, long-polling there until ``polling_elsewhere_until``.
    elsewhere_until: float = 0.0
    polling_elsewhere_until: float = 0.0

    def is_polling(self, now: float) -> bool:
        """A long poll of it is open here, or was lately on another coordinator."""
        return self.polling > 0 or now < self.polling_elsewhere_until

    @property
    def keys(self) -> list[QueueKey]:
        return [(b.contract, b.major) for b in self.record.bindings]


# How long an agent whose poll was cancelled still counts as serving: long enough for an agent
# that restarts its polls (a config reload) to poll again; a stopped agent is gone after it,
# not after the whole ``agent_alive_s`` (a busy agent that is not polling keeps that window).
LEFT_GRACE_S = 2.0


class Waiter:
    """One open long poll."""

    __slots__ = ("agent_id", "ended", "event", "handed", "keys", "reserved", "taken", "waiting")

    def __init__(self, agent_id: str, keys: list[QueueKey]) -> None:
        self.agent_id = agent_id
        self.keys = keys
        self.event = asyncio.Event()
        self.waiting = False  # blocked in wait(): may be reserved for an eager hand-off
        self.reserved = False
        self.handed = ""  # an attempt already claimed for this poll (durable), to answer with
        self.taken = False  # the poll answered with ``handed``
        self.ended = False

    async def wait(self, wait_s: float) -> None:
        """Until woken by an offer, handed an attempt, or ``wait_s`` pass (not while reserved:
        a commit that claims an attempt for this poll is under way)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        self.waiting = True
        try:
            while not self.handed:
                if self.event.is_set():
                    self.event.clear()
                    if not self.reserved:
                        return
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 and not self.reserved:
                    return
                try:
                    await asyncio.wait_for(self.event.wait(), None if self.reserved else remaining)
                except TimeoutError:
                    pass
        finally:
            self.waiting = False

    def take(self) -> str:
        """The attempt handed to this poll ("" when none): the poll answers with it."""
        if self.handed:
            self.taken = True
        return self.handed


class Dispatcher:
    def __init__(self, *, agent_alive_s: float = 30.0, empty_for_s: float = 1.0) -> None:
        """``empty_for_s``: how long a queue read empty from the store is believed empty, unless
        this process offers on it meanwhile (``known_empty``)."""
        self._agent_alive_s = agent_alive_s
        self._empty_for_s = empty_for_s
        self._read_empty_at: dict[QueueKey, float] = {}  # monotonic
        self._offered_at: dict[QueueKey, float] = {}  # monotonic
        self._waiters: dict[QueueKey, dict[Waiter, None]] = {}  # insertion-ordered
        self._agents: dict[str, AgentPresence] = {}
        # Called with the attempt id when a poll that was handed a claimed attempt ends without
        # answering with it (cancelled): the engine gives the attempt back.
        self.on_lost: Callable[[str], None] = lambda attempt_id: None

    # ---------- agents ----------

    def register_agent(self, record: AgentRecord, *, seen: bool = True) -> None:
        presence = self._agents.get(record.agent_id)
        if presence is None:
            presence = self._agents[record.agent_id] = AgentPresence(record)
        else:
            presence.record = record
        if seen:
            presence.last_seen = time.monotonic()

    def agent(self, agent_id: str) -> AgentRecord | None:
        presence = self._agents.get(agent_id)
        return None if presence is None else presence.record

    def touch(self, agent_id: str) -> None:
        presence = self._agents.get(agent_id)
        if presence is not None:
            presence.last_seen = time.monotonic()

    def seen(self, agent_id: str) -> tuple[bool, float | None]:
        """Whether the agent is alive (as dispatching judges it) and how many seconds ago this
        coordinator, or another one sharing the store, last heard from it (None: not since this
        coordinator started)."""
        presence = self._agents.get(agent_id)
        if presence is None:
            return False, None
        now = time.monotonic()
        heard = [presence.last_seen] if presence.last_seen else []
        if presence.elsewhere_until:
            heard.append(presence.elsewhere_until - self._agent_alive_s)
        if presence.polling > 0:
            heard.append(now)
        return self._alive(presence, now), (now - max(heard)) if heard else None

    def _alive(self, presence: AgentPresence, now: float) -> bool:
        return presence.is_polling(now) or now < presence.elsewhere_until or self._alive_here(presence, now)

    def _alive_here(self, presence: AgentPresence, now: float) -> bool:
        if presence.polling > 0:
            return True
        if presence.left_at and now - presence.left_at > LEFT_GRACE_S:
            return False  # its poll was cut off and it has not polled again: gone (or stopping)
        return presence.last_seen > 0 and now - presence.last_seen < self._agent_alive_s

    def alive_per_team(self) -> dict[str, int]:
        """How many agents of each team are alive (polling, or seen lately, here or elsewhere)."""
        now = time.monotonic()
        teams: dict[str, int] = {}
        for presence in list(self._agents.values()):
            if self._alive(presence, now):
                teams[presence.record.team] = teams.get(presence.record.team, 0) + 1
        return teams

    # Agents long-poll one coordinator at a time; the others learn of them from its hints.

    def presence(self, since: float) -> dict[str, int]:
        """The agents this coordinator served since ``since`` (monotonic), for the others
        (``Store.hint_presence``): agent id -> its open long polls here, 0 when it was only seen
        (a heartbeat, a report), -1 when its poll was cut off since (it left)."""
        agents: dict[str, int] = {}
        for agent_id, presence in self._agents.items():
            if presence.polling > 0:
                agents[agent_id] = presence.polling
            elif presence.left_at >= since:
                agents[agent_id] = -1
            elif presence.last_seen >= since:
                agents[agent_id] = 0
        return agents

    def seen_elsewhere(self, agents: dict[str, int], polling_for_s: float) -> None:
        """What another coordinator's ``presence`` said: its polling agents count as polling for
        ``polling_for_s`` (until it says so again), the ones it saw as alive for ``agent_alive_s``,
        the ones that left there as gone from it at once. Agents not registered here yet are
        skipped (the registered agents are read again from the store every moment)."""
        now = time.monotonic()
        for agent_id, polls in agents.items():
            presence = self._agents.get(agent_id)
            if presence is None:
                continue
            if polls < 0:
                presence.elsewhere_until = presence.polling_elsewhere_until = 0.0
                continue
            presence.elsewhere_until = now + self._agent_alive_s
            presence.polling_elsewhere_until = now + polling_for_s if polls > 0 else 0.0

    def serving(self, key: QueueKey) -> list[AgentPresence]:
        """Agents alive now that serve ``key``."""
        now = time.monotonic()
        return [a for a in self._agents.values() if key in a.keys and self._alive(a, now)]

    # ---------- long polls ----------

    @contextmanager
    def listen(self, agent_id: str, keys: list[QueueKey]) -> Iterator[Waiter]:
        """Open a long poll on ``keys`` for as long as the block runs."""
        waiter = Waiter(agent_id, keys)
        for key in keys:
            self._waiters.setdefault(key, {})[waiter] = None
        presence = self._agents.get(agent_id)
        if presence is not None:
            presence.polling += 1
            presence.left_at = 0.0
        try:
            yield waiter
        except asyncio.CancelledError:
            if presence is not None:
                presence.left_at = time.monotonic()
            raise
        finally:
            waiter.ended = True
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.pop(waiter, None)
                    if not waiters:
                        del self._waiters[key]
            if presence is not None:
                presence.polling -= 1
                presence.last_seen = time.monotonic()
            if waiter.handed and not waiter.taken:
                self.on_lost(waiter.handed)

    def offered(self, key: QueueKey, wake: int | None = None) -> None:
        """An offer on ``key`` is durable: wake the polls waiting for it to read the store (at
        most ``wake`` of those not woken yet; None: all)."""
        self._offered_at[key] = time.monotonic()
        self._read_empty_at.pop(key, None)
        for waiter in self._waiters.get(key, ()):
            if wake is not None:
                if wake <= 0:
                    return
                if waiter.event.is_set() or waiter.reserved or waiter.handed:
                    continue
                wake -= 1
            waiter.event.set()

    def wake_all(self) -> None:
        """Offers may have been made that this process was not told of (another coordinator's
        hints were lost): forget what was read empty, and have every poll read the store."""
        self._read_empty_at.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    # A cache of emptiness, so that the poll an agent sends after each task (usually answered by
    # an eager hand-off) does not read the store for offers it read as none a moment ago.

    def known_empty(self, keys: list[QueueKey]) -> bool:
        """Every queue of ``keys`` was read empty from the store within ``empty_for_s`` and
        nothing was offered on it since."""
        now = time.monotonic()
        return all(now - self._read_empty_at.get(k, -1e18) < self._empty_for_s for k in keys)

    def read_empty(self, keys: list[QueueKey], read_since: float) -> None:
        """A read of the store begun at ``read_since`` (monotonic) found no offer for ``keys``
        (unless one was offered after the read began: then nothing is learnt)."""
        for key in keys:
            if self._offered_at.get(key, -1e18) < read_since:
                self._read_empty_at[key] = read_since

    def reserve(self, key: QueueKey) -> Waiter | None:
        """A poll waiting on ``key`` now, set aside for ``hand`` (None when none waits)."""
        for waiter in self._waiters.get(key, ()):
            if waiter.waiting and not waiter.reserved and not waiter.handed and not waiter.ended:
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
