"""A coordinator in the test's own process and event loop (``coordinator.server.Coordinator``),
for tests that drive the engine's methods directly, and the one-step payments world they share:
team ``payments``, its contract ``payments/charge`` (major 1), the workflow ``payments/charge-once``
and an agent ``payments-1`` registered to serve it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from coordinator.principal import Principal
from coordinator.server import Coordinator
from coordinator.store.records import AgentRecord, Binding, SpanRecord
from tests.support.scenario import contract

ADMIN = Principal(admin=True)
PAYMENTS = Principal(team="payments")
CHARGE_ONCE = """\
workflow: payments/charge-once
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.charge.output.ref}"}
"""


class NoSpans:
    """A span sink that keeps nothing (for tests that do not look at spans)."""

    async def emit(self, records: list[SpanRecord]) -> None:
        pass


async def seed_payments(
    coordinator: Coordinator, *, workflow: str = CHARGE_ONCE, concurrency: int = 4
) -> None:
    """Team payments with its contract, ``workflow`` and the agent ``payments-1``."""
    await coordinator.teams.create(ADMIN, "payments")
    await coordinator.registry.register_contract(PAYMENTS, contract("payments/charge"), "c.yaml", False)
    await coordinator.registry.register_workflow(PAYMENTS, workflow, "w.yaml", False)
    await coordinator.engine.register_agent(
        PAYMENTS,
        AgentRecord("payments-1", "payments", (Binding("payments/charge", 1),), concurrency),
        *coordinator.engine.team_defaults("payments"),
    )


@contextlib.asynccontextmanager
async def coordinator_pair(
    url: str, home: Path, replica_poll_s: float
) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    """Two coordinators ``a`` and ``b`` in this process on the PostgreSQL schema ``url``, each with
    its own home under ``home``, reading the store again every ``replica_poll_s`` when no hint
    comes; stopped at the end."""
    from coordinator.config import CoordinatorConfig, EngineSettings
    from coordinator.store.postgres import PostgresStore

    started: list[Coordinator] = []
    try:
        for name in ("a", "b"):
            coordinator = Coordinator(
                CoordinatorConfig(
                    home=home / name,
                    listen="127.0.0.1:0",
                    store_url=url,
                    engine=EngineSettings(replica_poll_s=replica_poll_s),
                ),
                store=PostgresStore(url, pool_size=4),
                span_sink=NoSpans(),
            )
            await coordinator.start()
            started.append(coordinator)
        yield started[0], started[1]
    finally:
        for coordinator in started:
            await coordinator.stop(grace=0)
