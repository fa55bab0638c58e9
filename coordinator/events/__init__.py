"""Events: one EventBus interface (in-process by default) and publishing with triggers."""

from coordinator.events.base import EventBus, EventHandler
from coordinator.events.memory import InMemoryEventBus

__all__ = ["EventBus", "EventHandler", "InMemoryEventBus"]
