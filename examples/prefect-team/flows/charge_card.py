"""The payments team's ``charge-card`` flow, run by Accord through the ``prefect`` engine.

Accord creates one flow run of the deployment ``charge-card/accord`` per task, with the contract
input (payments/charge-card@1) as the run's parameters, and reads the output back from the
artifact the flow publishes under the key ``accord-output`` (``output_artifact`` in agent.yaml):
Prefect stores an artifact's data in its own database and serves it through its REST API, so the
agent needs no access to the flow's result storage. Publish JSON types only.

Accord also puts the caller's W3C ``traceparent`` in the run's labels under ``__OTEL_TRACEPARENT``:
Prefect's own OpenTelemetry instrumentation starts the flow run's span under it, and the flow can
read it (``accord_traceparent()`` below) to pass it on.

Serve it (a long-running process that creates the deployment and runs its flow runs):

    PREFECT_API_URL=http://127.0.0.1:4200/api python examples/prefect-team/flows/charge_card.py
"""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import flow, task
from prefect.artifacts import Artifact
from prefect.context import FlowRunContext

OUTPUT_ARTIFACT = "accord-output"


class CardDeclined(Exception):
    """The card processor said no: retrying cannot help (listed in the contract's non_retryable)."""


def publish_output(output: Any) -> Any:
    """Publish the flow's output where the agent reads it: an artifact of this flow run whose
    data is ``output`` as JSON."""
    Artifact(type="json", key=OUTPUT_ARTIFACT, data=output, description="Accord task output").create()
    return output


def accord_traceparent() -> str | None:
    """The traceparent of the Accord task this flow run serves, if any."""
    context = FlowRunContext.get()
    return context.flow_run.labels.get("__OTEL_TRACEPARENT") if context and context.flow_run else None


@task
def validate(order_id: str, amount_cents: int) -> dict[str, Any]:
    if amount_cents < 1:
        raise ValueError(f"amount_cents must be positive, got {amount_cents!r}")
    return {"order_id": order_id, "amount_cents": amount_cents}


@task
def charge(order: dict[str, Any], card_token: str) -> str:
    # A real flow would call the card processor here, with the order id as idempotency key.
    if card_token == "tok_declined":
        raise CardDeclined(f"card declined for order {order['order_id']}")
    digest = hashlib.sha256(f"{order['order_id']}:{order['amount_cents']}".encode()).hexdigest()
    return f"pay-{digest[:12]}"


@flow(name="charge-card", retries=0)  # Accord retries by the contract's policy
def charge_card(order_id: str, amount_cents: int, card_token: str = "") -> dict[str, Any]:
    payment_ref = charge(validate(order_id, amount_cents), card_token)
    return publish_output({"payment_ref": payment_ref})


if __name__ == "__main__":
    charge_card.serve(name="accord", tags=["accord", "payments"])
