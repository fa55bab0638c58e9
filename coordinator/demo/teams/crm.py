"""CRM team, on the ``python`` engine: tell the customer about one item of their order."""

from __future__ import annotations

from typing import Any


async def notify_customer(payload: dict[str, Any]) -> dict[str, Any]:
    return {"notification_id": f"ntf-{payload['order_id']}-{payload.get('sku', 'order')}"}
