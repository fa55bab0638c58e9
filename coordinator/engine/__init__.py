"""The run engine: run/step/attempt state machine, retries, timeouts, cancellation, spans."""

from coordinator.engine.engine import Assignment, Engine, HeartbeatAnswer, RunView
from coordinator.engine.spans import SpanSink, StoreSpanSink

__all__ = ["Assignment", "Engine", "HeartbeatAnswer", "RunView", "SpanSink", "StoreSpanSink"]
