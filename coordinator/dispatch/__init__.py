"""Long polls of agents and their liveness (task offers themselves are in the store)."""

from coordinator.dispatch.dispatcher import AgentPresence, Dispatcher, QueueKey, Waiter, queue_label

__all__ = ["AgentPresence", "Dispatcher", "QueueKey", "Waiter", "queue_label"]
