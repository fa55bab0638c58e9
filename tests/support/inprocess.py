"""A coordinator in the test's own process and event loop (``coordinator.server.Coordinator``),
for tests that drive the engine's methods directly, and the one-step payments world they share:
team ``payments``, its contract ``payments/charge`` (major 1), the workflow ``payments/charge-once``
and an agent ``payments-1`` registered to serve it."""

from __future__ import annotations

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
