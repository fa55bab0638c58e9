"""The run engine: the run/step/attempt state machine (``machine``), durable timers (``timers``),
authorization (``authz``), read views (``views``), and the engine that commits transitions
(``engine``). See docs/architecture.md."""

from coordinator.engine.engine import Assignment, Engine, HeartbeatAnswer
from coordinator.engine.spans import StoreSpanSink
from coordinator.engine.views import RunView
from coordinator.telemetry.sink import SpanSink

__all__ = ["Assignment", "Engine", "HeartbeatAnswer", "RunView", "SpanSink", "StoreSpanSink"]
