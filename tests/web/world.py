"""A real coordinator (subprocess, UI on port 0) with three teams and their agents, for the UI's
end-to-end tests.

payments and warehouse run in-process TestAgents (real gRPC API); shipping runs a real
``accord agent start`` with the shell engine, so a failed shipment carries real engine details
(exit code, stderr tail) in TaskError.details_json.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.testing import AgentProcess
from tests.support.agent import Call, TaskFailed, TestAgent
from tests.support.coordinator import CoordinatorProcess

CHARGE_1_0 = """
contract: payments/charge-card
version: 1.0.0
description: Charge the customer's card for an order.
input:
  type: object
  required: [order_id, amount_cents]
  properties:
    order_id: {type: string}
    amount_cents: {type: integer, minimum: 1}
    card_token: {type: string}
output:
  type: object
  required: [payment_ref]
  properties:
    payment_ref: {type: string}
retry: {max_attempts: 2, initial_backoff: 100ms}
idempotent: true
sensitive: [input.card_token]
"""
# A compatible change: input widens (zero amounts allowed), output narrows (a typed new field).
CHARGE_1_1 = (
    CHARGE_1_0.replace("version: 1.0.0", "version: 1.1.0")
    .replace("minimum: 1}", "minimum: 0}")
    .replace(
        "    payment_ref: {type: string}\n",
        "    payment_ref: {type: string}\n    receipt_url: {type: string}\n",
    )
)
# A breaking change (a new major): the card token becomes required.
CHARGE_2_0 = CHARGE_1_0.replace("version: 1.0.0", "version: 2.0.0").replace(
    "required: [order_id, amount_cents]", "required: [order_id, amount_cents, card_token]"
)
RESERVE = """
contract: warehouse/reserve-stock
version: 2.0.0
description: Reserve the items of an order.
input:
  type: object
  required: [order_id]
  properties:
    order_id: {type: string}
output:
  type: object
  required: [items]
  properties:
    items:
      type: array
      items: {type: object, required: [sku], properties: {sku: {type: string}}}
    warehouse_note: {type: string}
sensitive: [output.warehouse_note]
"""
HOLD = """
contract: warehouse/hold-stock
version: 1.0.0
description: Hold stock until released (slow on purpose).
input:
  type: object
  properties: {order_id: {type: string}}
output:
  type: object
  properties: {held: {type: boolean}}
timeouts: {start_to_close: 10m, heartbeat: 30s}
"""
SHIP = """
contract: shipping/create-shipment
version: 1.0.0
description: Book a shipment for a paid order with reserved items.
input:
  type: object
  required: [order_id, payment_ref, items]
  properties:
    order_id: {type: string}
    payment_ref: {type: string}
    items: {type: array, items: {type: object}}
output:
  type: object
  required: [shipment_id]
  properties:
    shipment_id: {type: string}
retry: {max_attempts: 2, initial_backoff: 200ms}
"""
ORDER_TO_CASH = """
workflow: shipping/order-to-cash
description: Charge, reserve stock, ship.
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}, card_token: {type: string}}
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}", card_token: "${input.card_token}"}
  reserve:
    contract: warehouse/reserve-stock@^2
    input: {order_id: "${input.order_id}"}
  ship:
    contract: shipping/create-shipment@^1
    input:
      order_id: "${input.order_id}"
      payment_ref: "${steps.charge.output.payment_ref}"
      items: "${steps.reserve.output.items}"
"""
HOLD_WORKFLOW = """
workflow: shipping/hold-and-wait
description: Holds stock for a long time (a live run to cancel).
input:
  type: object
  properties: {order_id: {type: string}}
steps:
  hold:
    contract: warehouse/hold-stock@^1
    input: {order_id: "${input.order_id}"}
"""
NOTIFY = """
contract: warehouse/notify-picker
version: 1.0.0
description: Tell the picker about one item.
input:
  type: object
  required: [sku]
  properties: {sku: {type: string}}
output:
  type: object
  properties: {told: {type: boolean}}
retry: {max_attempts: 3, initial_backoff: 50ms}
"""
# The kinds of runs the demo shows, for the trace's browser tests (test_trace_views.py).
CHARGE_AND_RESERVE = """
workflow: shipping/charge-and-reserve
description: Charge and reserve (clean, retried or declined, by order id).
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}}
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}"}
  reserve:
    contract: warehouse/reserve-stock@^2
    input: {order_id: "${input.order_id}"}
"""
FAN_OUT = """
workflow: shipping/fan-out
description: Reserve, then tell the picker about each item (the second item always fails).
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
steps:
  reserve:
    contract: warehouse/reserve-stock@^2
    input: {order_id: "${input.order_id}"}
  notify:
    contract: warehouse/notify-picker@^1
    for_each: "${steps.reserve.output.items}"
    input: {sku: "${item.sku}"}
"""
HOLD_THEN_CHARGE = """
workflow: shipping/hold-then-charge
description: Hold stock, then charge (cancelled while holding, the charge never starts).
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
steps:
  hold:
    contract: warehouse/hold-stock@^1
    input: {order_id: "${input.order_id}"}
  charge:
    contract: payments/charge-card@^1
    when: "${steps.hold.output.held}"
    input: {order_id: "${input.order_id}", amount_cents: 100}
"""
# The charge's amount comes from an input field without the contract's minimum: given -5, the
# workflow's own mapping produces an input the contract refuses, before any team sees it.
MAPPING_FAILURE = """
workflow: shipping/mapping-failure
description: Charge an amount taken from the run's input as it is.
input:
  type: object
  required: [order_id, amount]
  properties: {order_id: {type: string}, amount: {type: integer}}
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount}"}
"""
# An event payments publishes and a shipping workflow its trigger starts (the run page links to
# the event's page).
REFUND_ISSUED = """
contract: payments/refund-issued
version: 1.0.0
kind: event
description: A refund was issued for an order.
payload:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
"""
ON_REFUND = """
workflow: shipping/on-refund
description: Release the order's stock once payments refunds it.
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
steps:
  reserve:
    contract: warehouse/reserve-stock@^2
    input: {order_id: "${input.order_id}"}
triggers:
  - on: payments/refund-issued@^1
    input: {order_id: "${event.order_id}"}
"""
SHIPPING_AGENT = """
team: shipping
coordinator: {address}
token: "${{secret:ACCORD_TOKEN}}"
concurrency: 2
secrets: {{provider: env}}
implements:
  shipping/create-shipment@1:
    engine: shell
    with:
      command:
        - {python}
        - -c
        - |
          import sys
          print("Started by coordinator", file=sys.stderr)
          print("+ ./print-label.sh", file=sys.stderr)
          print("ERROR: label printer lp0 offline", file=sys.stderr)
          sys.exit(1)
"""


@dataclass
class World:
    coordinator: CoordinatorProcess
    ui_url: str
    tokens: dict[str, str]
    agents: list[TestAgent] = field(default_factory=list)
    shipping_agent: AgentProcess | None = None
    failed_run_id: str = ""
    held: list[str] = field(default_factory=list)

    async def start_run(self, team: str, workflow: str, payload: dict[str, Any]) -> str:
        async with self.coordinator.client(self.tokens[team]) as client:
            response = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow=workflow, input_json=json.dumps(payload))
            )
        return str(response.run.run_id)

    async def wait_status(self, run_id: str, statuses: set[int], timeout: float = 30.0) -> pb.Run:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with self.coordinator.client() as client:
            while True:
                run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
                if run.status in statuses:
                    return run
                if time.monotonic() > deadline:
                    raise AssertionError(f"run {run_id} still {run.status}: {run}")
                await asyncio.sleep(0.1)


async def build_world(home: Path) -> World:
    coordinator = CoordinatorProcess.start(home, "--ui", "127.0.0.1:0")
    state = json.loads((home / "coordinator.json").read_text())
    assert "ui" in state, f"coordinator.json has no UI address: {state}\n{coordinator.log()}"
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "warehouse", "shipping")}
    tokens["admin"] = coordinator.admin_token
    for team, text in (
        ("payments", CHARGE_1_0),
        ("payments", CHARGE_1_1),
        ("payments", CHARGE_2_0),
        ("warehouse", RESERVE),
        ("warehouse", HOLD),
        ("shipping", SHIP),
        ("warehouse", NOTIFY),
        ("payments", REFUND_ISSUED),
    ):
        response = await coordinator.register_contract(tokens[team], text)
        assert response.registered, response
    for text in (
        ORDER_TO_CASH,
        HOLD_WORKFLOW,
        CHARGE_AND_RESERVE,
        FAN_OUT,
        HOLD_THEN_CHARGE,
        MAPPING_FAILURE,
        ON_REFUND,
    ):
        response = await coordinator.register_workflow(tokens["shipping"], text)
        assert response.registered, response
    world = World(coordinator=coordinator, ui_url=f"http://{state['ui']}", tokens=tokens)

    async def charge(call: Call) -> dict[str, Any]:
        order = str(call.input["order_id"])
        if order.startswith("flaky") and call.attempt == 1:
            raise TaskFailed("GatewayTimeout", "payment gateway did not answer within 2s", retryable=True)
        if order.startswith("declined"):
            raise TaskFailed(
                "CardDeclined", f"card for order {order} was declined (code 05)", retryable=False
            )
        return {"payment_ref": f"pay-{order}"}

    async def notify(call: Call) -> dict[str, Any]:
        if call.input["sku"] == "sku-2":
            raise TaskFailed("PickerAway", "no picker on shift for sku-2", retryable=True)
        return {"told": True}

    async def reserve(call: Call) -> dict[str, Any]:
        return {"items": [{"sku": "sku-1"}, {"sku": "sku-2"}], "warehouse_note": "aisle 7, secret"}

    async def hold(call: Call) -> dict[str, Any]:
        world.held.append(call.task.attempt_id)
        await asyncio.sleep(3600)
        return {"held": True}

    world.agents = [
        TestAgent(coordinator.address, tokens["payments"], "payments", {"payments/charge-card@1": charge}),
        TestAgent(
            coordinator.address,
            tokens["warehouse"],
            "warehouse",
            {
                "warehouse/reserve-stock@2": reserve,
                "warehouse/hold-stock@1": hold,
                "warehouse/notify-picker@1": notify,
            },
        ),
    ]
    for agent in world.agents:
        await agent.start()
    config = home / "shipping-agent.yaml"
    config.write_text(SHIPPING_AGENT.format(address=coordinator.address, python=sys.executable))
    world.shipping_agent = AgentProcess(
        config, workdir=home / "shipping-agent", env={"ACCORD_TOKEN": tokens["shipping"]}
    )
    world.shipping_agent.start()
    await world.shipping_agent.wait_for_log("registered", timeout=30)

    world.failed_run_id = await world.start_run(
        "shipping",
        "shipping/order-to-cash",
        {"order_id": "o-1", "amount_cents": 1299, "card_token": "tok_visa_4242"},
    )
    await world.wait_status(world.failed_run_id, {pb.RUN_STATUS_FAILED}, timeout=60)
    return world


async def stop_world(world: World) -> None:
    for agent in world.agents:
        await agent.stop()
    if world.shipping_agent is not None:
        world.shipping_agent.stop()
    world.coordinator.stop()
