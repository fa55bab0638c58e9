"""The payments team's worker for the ``charge-card`` state machine: takes the orders its Charge
task sends to the queue, charges them, and answers Step Functions with the task token
(SendTaskSuccess with the payment, or SendTaskFailure with a named error the state machine and
Accord act on: ``CardDeclined`` is final, ``Bank.Unavailable`` is retried).

    python examples/stepfunctions-team/worker.py --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/charge-card-work

Uses the standard AWS configuration (AWS_DEFAULT_REGION, credentials, AWS_ENDPOINT_URL for a local
emulator). Stops on SIGTERM / Ctrl-C after the message in hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from typing import Any

logger = logging.getLogger("charge-card-worker")


class CardDeclined(Exception):
    pass


class BankUnavailable(Exception):
    pass


def charge(order: dict[str, Any]) -> dict[str, Any]:
    """The team's own work (here: a stand-in for the card processor's API, called with the
    step's idempotency key so a repeated charge is not charged twice)."""
    if str(order.get("order_id", "")).startswith("declined-"):
        raise CardDeclined(f"the card for order {order['order_id']} was declined")
    if str(order.get("order_id", "")).startswith("unavailable-"):
        raise BankUnavailable("the card processor did not answer")
    return {"payment_ref": f"pay-{order['order_id']}", "idempotency_key": order.get("idempotency_key")}


def handle(sfn: Any, body: dict[str, Any]) -> None:
    token = body.pop("task_token")
    try:
        result = charge(body)
    except CardDeclined as exc:
        sfn.send_task_failure(taskToken=token, error="CardDeclined", cause=str(exc))
        logger.info("declined %s", body.get("order_id"))
        return
    except BankUnavailable as exc:
        sfn.send_task_failure(taskToken=token, error="Bank.Unavailable", cause=str(exc))
        logger.info("bank unavailable for %s", body.get("order_id"))
        return
    sfn.send_task_success(taskToken=token, output=json.dumps(result))
    logger.info("charged %s (traceparent %s)", body.get("order_id"), body.get("traceparent"))


def main() -> None:
    import boto3

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queue-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sqs, sfn = boto3.client("sqs"), boto3.client("stepfunctions")
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("worker ready on %s", args.queue_url)
    while not stopping:
        reply = sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            handle(sfn, json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=message["ReceiptHandle"])


if __name__ == "__main__":
    main()
