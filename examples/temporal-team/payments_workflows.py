"""The payments team's Temporal code behind ``payments/charge-card@1`` (docs/engines/temporal.md).

The agent starts ``ChargeCard`` on task queue ``payments`` with the step's input (the contract's
``{order_id, amount_cents, card_token}``) as its one argument; the workflow's return value is the
step's output (``{payment_ref}``). A declined card raises a non-retryable ``ApplicationError`` of
type ``CardDeclined``: Accord reports it with that type, which the contract lists as
non-retryable. ``worker.py`` runs a worker for it.

Temporal's workflow sandbox imports this module again: it imports only the SDK and the standard
library.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

TASK_QUEUE = "payments"


@activity.defn(name="charge_card")
async def charge_card(order: dict[str, Any]) -> str:
    """Stands in for the card gateway: a token ending in ``_declined`` is declined."""
    token = str(order.get("card_token") or "")
    if token.endswith("_declined"):
        raise ApplicationError(
            f"card declined for order {order['order_id']}: do not honor",
            {"code": "05"},
            type="CardDeclined",
            non_retryable=True,
        )
    digest = hashlib.sha256(f"{order['order_id']}:{order['amount_cents']}".encode()).hexdigest()[:12]
    return f"pay-{digest}"


@workflow.defn(name="ChargeCard")
class ChargeCard:
    @workflow.run
    async def run(self, order: dict[str, Any]) -> dict[str, Any]:
        payment_ref = await workflow.execute_activity(
            charge_card,
            order,
            start_to_close_timeout=timedelta(seconds=30),
            # The gateway's transient errors are retried here; a decline is not (non_retryable).
            retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
        )
        return {"payment_ref": payment_ref}
