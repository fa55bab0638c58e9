"""Payments team, on the ``python`` engine: charge a card.

Behaviour the demo relies on, keyed by the order id so every run is reproducible:
- ``flaky-*``: the first attempt hits a (simulated) gateway timeout, the retry succeeds;
- ``declined-*``: the card is declined, a non-retryable error (the contract lists CardDeclined).
"""

from __future__ import annotations

import hashlib
from typing import Any


class GatewayTimeout(Exception):
    """The payment gateway did not answer in time; worth retrying."""


class CardDeclined(Exception):
    """The issuer declined the card; retrying cannot help."""


def charge_card(payload: dict[str, Any], task: Any) -> dict[str, Any]:
    order_id = str(payload["order_id"])
    if order_id.startswith("declined-"):
        raise CardDeclined(f"card for order {order_id} was declined by the issuer (code 05)")
    if order_id.startswith("flaky-") and task.attempt == 1:
        raise GatewayTimeout("payment gateway did not answer within 2s")
    digest = hashlib.sha256(task.idempotency_key.encode()).hexdigest()[:12]
    return {"payment_ref": f"pay_{digest}"}
