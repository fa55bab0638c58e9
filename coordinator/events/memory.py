"""In-process EventBus (the embedded default): ``publish`` runs the handler at once, in this
process, so an event is delivered when its triggers have run."""

from __future__ import annotations

from coordinator.events.base import EventHandler
from coordinator.store.records import EventRecord


class InMemoryEventBus:
    def __init__(self) -> None:
        self._handler: EventHandler | None = None

    @property
    def where(self) -> str:
        return "the in-process event bus"

    def available(self) -> bool:
        return True

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler

    async def publish(self, event: EventRecord) -> None:
        if self._handler is None:
            raise RuntimeError("the in-process event bus was not started")
        await self._handler(event.event_id)

    async def close(self) -> None:
        self._handler = None
