"""The EventBus interface: how a stored event reaches the code that runs its triggers.

The store is the source of truth: ``EventService`` stores an event first, then hands it to the
bus (``publish``); the bus calls the handler given to ``start`` with the event's id, at least
once, on this coordinator or on another one sharing the bus. The handler is idempotent (it
starts each triggered run with a key derived from the event id and the workflow).

Two implementations: ``InMemoryEventBus`` (the embedded default: the handler runs in this
process) and ``JetStreamEventBus`` (NATS JetStream: a durable consumer shared by all replicas).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from coordinator.store.records import EventRecord

# Runs an event's triggers, given its id; raises when they could not run (the bus delivers the
# event again later).
EventHandler = Callable[[str], Awaitable[None]]


class EventBus(Protocol):
    @property
    def where(self) -> str:
        """What the bus is, for messages: ``the in-process event bus``, ``NATS at HOST:PORT``."""

    def available(self) -> bool:
        """False while the bus cannot take events (its server is away): publishing is refused
        then, before anything is stored, with a retryable error."""

    async def start(self, handler: EventHandler) -> None:
        """Connect (raising ``UnreachableError`` naming the address if it cannot) and deliver
        events to ``handler`` from now on."""

    async def publish(self, event: EventRecord) -> None:
        """Hand a stored event on: returns once it cannot be lost any more (JetStream
        acknowledged it; in process: its handler ran). Raises when it could not; the event stays
        undelivered in the store and is handed on again later. Publishing one event twice
        delivers it once where the bus can tell (JetStream's ``Nats-Msg-Id``), else the
        handler's idempotency makes the second delivery do nothing."""

    async def close(self) -> None: ...
