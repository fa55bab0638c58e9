"""The workflows and activities the temporal engine's tests run on a real Temporal dev server.

Imported by the worker of tests/engines/temporal_support.py; Temporal's workflow sandbox imports
this module again, so it imports nothing but the SDK and the standard library.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

TASK_QUEUE = "accord-tests"


@activity.defn(name="decline_card")
async def decline_card(reason: str) -> None:
    raise ApplicationError(reason, {"code": "do_not_honor"}, type="CardDeclined", non_retryable=True)


@workflow.defn(name="AccordTest")
class AccordTest:
    """Does what its input says: ``fail`` (retryable, non_retryable, activity, bug),
    ``fail_before_attempt`` (fails while the Accord attempt in its memo is lower), ``sleep``
    (seconds; cancellable unless ``ignore_cancel``), else returns its input with what it knows of its start."""

    @workflow.run
    async def run(self, order: dict[str, Any]) -> dict[str, Any]:
        memo = workflow.memo()
        attempt = int(memo.get("accord.attempt", 0))
        fail = order.get("fail")
        if fail == "retryable":
            raise ApplicationError("card gateway timed out", type="GatewayTimeout")
        if fail == "non_retryable":
            raise ApplicationError(
                "card declined: do not honor", {"code": "05"}, type="CardDeclined", non_retryable=True
            )
        if fail == "activity":
            await workflow.execute_activity(
                decline_card,
                "issuer said no",
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        if fail == "bug":
            raise RuntimeError("a bug in the workflow code")
        if attempt < int(order.get("fail_before_attempt", 0)):
            raise ApplicationError(f"attempt {attempt} is too early", type="TooEarly")
        if order.get("sleep"):
            try:
                await workflow.sleep(float(order["sleep"]))
            except asyncio.CancelledError:
                if not order.get("ignore_cancel"):
                    raise
                await workflow.sleep(float(order["sleep"]))
        return {
            "order_id": order.get("order_id"),
            "payment_ref": f"pay-{order.get('order_id')}",
            "attempt": attempt,
            "workflow_id": workflow.info().workflow_id,
        }


@workflow.defn(name="AccordPositional")
class AccordPositional:
    """A workflow of several positional arguments (a binding's ``args:``)."""

    @workflow.run
    async def run(self, order_id: str, amount_cents: int, items: list[Any], note: str) -> dict[str, Any]:
        return {"order_id": order_id, "amount_cents": amount_cents, "items": items, "note": note}
