"""The span sink the engine and the OTLP receiver write to: every span the coordinator keeps
passes here. It scrubs the run's sensitive values (whoever produced the span: an agent's export,
or the coordinator's own attempt span carrying an engine's error message), stores the spans, and
offers them to the forwarder when the standard variables name an OTLP backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from coordinator.store.codec import SPANS_PER_TURN
from coordinator.store.records import SpanRecord
from coordinator.telemetry.forward import ForwardConfig, SpanForwarder
from coordinator.telemetry.scrub import Scrubber
from coordinator.telemetry.sensitivity import RunSensitivity, SensitivityStore

logger = logging.getLogger(__name__)

COORDINATOR_SERVICE = "accord-coordinator"  # SpanRecord.service of the coordinator's own spans


class SpanSink(Protocol):
    """Where finished spans go: the engine emits its run, step and attempt spans to one, the OTLP
    receiver the spans agents export. ``TelemetrySink`` is the coordinator's."""

    async def emit(self, records: list[SpanRecord]) -> None: ...


class SpanStore(SensitivityStore, Protocol):
    async def insert_spans(self, spans: list[SpanRecord]) -> None: ...


class TelemetrySink:
    """``SpanSink`` (``async emit(records)``): scrub, store, then offer to the forwarder, which
    never blocks (a down backend costs dropped forwards, counted, never a slower run).
    ``start()`` once the event loop runs; ``aclose()`` on shutdown."""

    def __init__(
        self,
        store: SpanStore,
        forwarder: SpanForwarder | None = None,
        *,
        sensitivity: RunSensitivity | None = None,
    ) -> None:
        self.store = store
        self.forwarder = forwarder
        self.sensitivity = sensitivity or RunSensitivity(store)

    async def _scrubbed(self, records: list[SpanRecord]) -> list[SpanRecord]:
        by_run: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            by_run.setdefault(record.run_id, []).append(index)
        clean = list(records)
        scrubbed = 0
        for run_id, indexes in by_run.items():
            needs_values = run_id and any(_may_carry_payload(records[i]) for i in indexes)
            values = await self.sensitivity.values(run_id) if needs_values else set()
            scrubber = Scrubber(values)  # with no values it still redacts credential-named keys
            for index in indexes:
                if _may_carry_payload(records[index]):
                    clean[index] = scrubber.record(records[index])
                    scrubbed += 1
                    if scrubbed % SPANS_PER_TURN == 0:
                        await asyncio.sleep(0)
                # else: the coordinator's own span of a success, its attribute keys the
                # engine's (coordinator/engine/spans.py) and its values ids and names: as it is
        return clean

    async def emit(self, records: list[SpanRecord]) -> None:
        if not records:
            return
        clean = await self._scrubbed(records)
        await self.store.insert_spans(clean)
        if self.forwarder is not None:
            self.forwarder.offer(clean)

    def start(self) -> None:
        if self.forwarder is not None:
            self.forwarder.start()

    async def aclose(self) -> None:
        if self.forwarder is not None:
            await self.forwarder.aclose()


def _may_carry_payload(record: SpanRecord) -> bool:
    """False for the coordinator's own spans that carry only ids and names (a successful run,
    step or attempt): the run's payloads need not be read to scrub them, which keeps the engine's
    hot path free of store reads. An error message or an agent's span may quote a payload."""
    return record.service != COORDINATOR_SERVICE or bool(record.status_message or record.events)


def make_span_sink(store: SpanStore, env: Mapping[str, str]) -> TelemetrySink:
    """The coordinator's span sink for ``env`` (the process environment, read once at start-up).
    Raises ``ForwardConfigError`` for a forwarding configuration it cannot follow."""
    config = ForwardConfig.from_env(env)
    return TelemetrySink(store, SpanForwarder(config) if config is not None else None)
