"""The EventBus interface: where published events go (in-process by default, NATS for replicas)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from coordinator.store.records import EventRecord

EventHandler = Callable[[EventRecord], Awaitable[None]]


class EventBus(Protocol):
    async def publish(self, event: EventRecord) -> None: ...
    def subscribe(self, handler: EventHandler) -> None: ...
    async def close(self) -> None: ...
