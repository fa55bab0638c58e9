"""Shipping team, on the ``http`` engine: a small service that creates shipments.

The agent POSTs the task input as JSON; the service answers with the output JSON. The demo starts
it on 127.0.0.1 with a free port.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app() -> Starlette:
    shipments: dict[str, dict[str, Any]] = {}

    async def create_shipment(request: Request) -> JSONResponse:
        body = await request.json()
        key = request.headers.get("idempotency-key") or body["order_id"]
        if key not in shipments:  # an idempotent service: a retried request gets the same answer
            shipments[key] = {
                "shipment_id": f"shp-{len(shipments) + 1:04d}",
                "express": len(body.get("items", [])) > 1,
            }
        return JSONResponse(shipments[key])

    return Starlette(routes=[Route("/shipments", create_shipment, methods=["POST"])])
