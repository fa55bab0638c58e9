"""Telemetry as one server hook of the coordinator process (``coordinator.server.ServerHook``).

It owns the span sink the engine writes to (store + OTLP forwarder), serves the OTLP receiver on
the coordinator's gRPC port (behind its auth interceptor), and runs the retention task::

    telemetry = TelemetryHook(env=os.environ, span_retention=config.span_retention,
                              principal=current_principal)   # the API's: who calls
    engine = Engine(store, ..., telemetry.sink(store), ...)
    ...
    for hook in [telemetry, *hooks]: hook.configure(server, coordinator)   # adds the receiver
    ...
    closer = await telemetry.start(coordinator)                            # forwarder + pruning
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from contracts.durations import parse_duration
from coordinator.principal import Principal
from coordinator.telemetry.receiver import add_otlp_receiver
from coordinator.telemetry.retention import DEFAULT_SPAN_RETENTION, run_retention
from coordinator.telemetry.sampling import sampler_from_env
from coordinator.telemetry.sink import SpanStore, TelemetrySink, make_span_sink

logger = logging.getLogger(__name__)


class TelemetryHook:
    """Build once at the process's entry point. Configuration problems (a misspelled sampler, an
    OTLP protocol the forwarder cannot speak, a bad retention) are raised here, at start-up."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        principal: Callable[[], Principal],
        span_retention: str | float = DEFAULT_SPAN_RETENTION,
        prune_interval: str | float = 3600.0,
        prune: bool = True,
    ) -> None:
        """``prune``: run the span retention task here (False where the coordinator's retention
        prunes spans with the rest, coordinator/store/retention.py)."""
        self.env = dict(env)
        self._principal = principal
        sampler_from_env(self.env)  # report a bad OTEL_TRACES_SAMPLER now, not per run
        self._prune = prune
        self.retention_s = parse_duration(span_retention, what="--span-retention") if prune else float("inf")
        self.prune_interval_s = parse_duration(prune_interval, what="prune interval")
        self._sink: TelemetrySink | None = None
        self._retention: asyncio.Task[None] | None = None

    def sink(self, store: SpanStore) -> TelemetrySink:
        """The span sink for the engine (and the receiver): store + forwarder."""
        if self._sink is None:
            self._sink = make_span_sink(store, self.env)
        return self._sink

    def configure(self, server: grpc.aio.Server, coordinator: Any) -> None:
        engine = getattr(coordinator, "engine", None)
        add_otlp_receiver(
            server,
            coordinator.store,
            principal=self._principal,
            sink=self.sink(coordinator.store),
            known_run=engine.known_run if engine is not None else None,
        )

    async def start(self, coordinator: Any) -> Callable[[], Awaitable[None]]:
        sink = self.sink(coordinator.store)
        sink.start()
        if sink.forwarder is not None:
            logger.info("forwarding spans to the OTLP backend at %s", sink.forwarder.config.target)
        if self._prune:
            self._retention = asyncio.get_running_loop().create_task(
                run_retention(coordinator.store, self.retention_s, self.prune_interval_s),
                name="accord-span-retention",
            )
        return self.close

    async def close(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        if self._sink is not None:
            await self._sink.aclose()
