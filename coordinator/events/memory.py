"""In-process EventBus: handlers run as tasks on the event loop."""

from __future__ import annotations

import asyncio
import logging

from coordinator.events.base import EventHandler
from coordinator.store.records import EventRecord

logger = logging.getLogger(__name__)


class InMemoryEventBus:
    def __init__(self) -> None:
        self._handlers: list[EventHandler] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    async def publish(self, event: EventRecord) -> None:
        for handler in self._handlers:
            task = asyncio.create_task(self._run(handler, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(handler: EventHandler, event: EventRecord) -> None:
        try:
            await handler(event)
        except Exception:
            logger.exception("event handler failed for %s", event.event_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
