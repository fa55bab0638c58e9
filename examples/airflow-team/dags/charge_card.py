"""The payments team's ``charge_card`` DAG, run by Accord through the ``airflow`` engine.

Accord triggers one DAG run per task with the contract input (payments/charge-card@1) as the
run's ``conf``. The DAG's output is what the ``finalize`` task returns: Airflow stores it as the
XCom ``return_value``, and the agent reads it back (``output: {task_id: finalize}`` in
agent.yaml). Return JSON types only (dicts, lists, str, int, float, bool).

Accord also puts the caller's W3C trace context in ``conf["airflow/dagrun_parent_trace_context"]``;
Airflow versions that know the key nest the run's spans under the caller's trace.
"""

from __future__ import annotations

import hashlib

from airflow.sdk import dag, get_current_context, task


@dag(
    dag_id="charge_card",
    schedule=None,  # triggered by Accord only
    catchup=False,
    default_args={"retries": 0},  # Accord retries by the contract's policy
    tags=["accord", "payments"],
)
def charge_card():
    @task
    def validate() -> dict:
        conf = get_current_context()["dag_run"].conf or {}
        if conf.get("amount_cents", 0) < 1:
            raise ValueError(f"amount_cents must be positive, got {conf.get('amount_cents')!r}")
        return {"order_id": conf["order_id"], "amount_cents": conf["amount_cents"]}

    @task
    def charge(order: dict) -> str:
        # A real DAG would call the card processor here, with the order id as idempotency key.
        digest = hashlib.sha256(f"{order['order_id']}:{order['amount_cents']}".encode()).hexdigest()
        return f"pay-{digest[:12]}"

    @task
    def finalize(payment_ref: str) -> dict:
        return {"payment_ref": payment_ref}

    finalize(charge(validate()))


charge_card()
