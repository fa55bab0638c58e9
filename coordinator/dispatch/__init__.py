"""Task queues per (contract, major), long-poll matching, agents."""

from coordinator.dispatch.dispatcher import AgentState, Dispatcher, QueueKey, queue_label

__all__ = ["AgentState", "Dispatcher", "QueueKey", "queue_label"]
