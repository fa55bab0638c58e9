"""The span sink the engine and the OTLP receiver write to: the store, plus the forwarder to an
external OTLP backend when the standard variables name one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from coordinator.telemetry.forward import ForwardConfig, SpanForwarder
from coordinator.telemetry.spans import SpanRecord


class SpanStore(Protocol):
    async def insert_spans(self, spans: list[SpanRecord]) -> None: ...


class TelemetrySink:
    """``SpanSink`` (``async emit(records)``): stores every span, then offers it to the forwarder,
    which never blocks (a down backend costs dropped forwards, counted, never a slower run).
    ``start()`` once the event loop runs; ``aclose()`` on shutdown."""

    def __init__(self, store: SpanStore, forwarder: SpanForwarder | None = None) -> None:
        self.store = store
        self.forwarder = forwarder

    async def emit(self, records: list[SpanRecord]) -> None:
        if not records:
            return
        await self.store.insert_spans(records)
        if self.forwarder is not None:
            self.forwarder.offer(records)

    def start(self) -> None:
        if self.forwarder is not None:
            self.forwarder.start()

    async def aclose(self) -> None:
        if self.forwarder is not None:
            await self.forwarder.aclose()


def make_span_sink(store: SpanStore, env: Mapping[str, str]) -> TelemetrySink:
    """The coordinator's span sink for ``env`` (the process environment, read once at start-up).
    Raises ``ForwardConfigError`` for a forwarding configuration it cannot follow."""
    config = ForwardConfig.from_env(env)
    return TelemetrySink(store, SpanForwarder(config) if config is not None else None)
