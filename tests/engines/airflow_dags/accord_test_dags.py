"""DAGs the real-Airflow tests trigger (tests/engines/test_airflow_real.py). Parsed by Airflow's
own dag-processor in its own virtual environment, so only Airflow's APIs are imported here."""

from __future__ import annotations

import time

from airflow.sdk import dag, get_current_context, task

DEFAULTS = {"retries": 0}


@dag(dag_id="accord_echo", schedule=None, catchup=False, default_args=DEFAULTS, tags=["accord-test"])
def accord_echo():
    @task
    def validate() -> None:
        conf = get_current_context()["dag_run"].conf or {}
        if "order_id" not in conf:
            raise ValueError("conf has no order_id")

    @task
    def finalize() -> dict:
        conf = get_current_context()["dag_run"].conf or {}
        return {
            "payment_ref": f"pay-{conf['order_id']}",
            "amount_cents": conf.get("amount_cents", 0),
            "trace_context_received": "airflow/dagrun_parent_trace_context" in conf,
        }

    validate() >> finalize()


@dag(dag_id="accord_fail", schedule=None, catchup=False, default_args=DEFAULTS, tags=["accord-test"])
def accord_fail():
    @task
    def extract() -> int:
        return 1

    @task
    def boom(value: int) -> None:
        raise RuntimeError(f"card service rejected order {value}")

    @task
    def finalize() -> dict:
        return {"never": True}

    boom(extract()) >> finalize()


@dag(
    dag_id="accord_paused",
    schedule=None,
    catchup=False,
    default_args=DEFAULTS,
    is_paused_upon_creation=True,
    tags=["accord-test"],
)
def accord_paused():
    @task
    def finalize() -> dict:
        return {"ran": True}

    finalize()


@dag(dag_id="accord_slow", schedule=None, catchup=False, default_args=DEFAULTS, tags=["accord-test"])
def accord_slow():
    # The task a cancel interrupts is the DAG's only leaf. With a task after it, the cancel
    # (PATCH state=failed) fails `slow` and skips that task; a scheduler loop that had read the
    # run as running just before then finds every leaf skipped and marks the run *success* over
    # the API's failed (SQLite has no row locks to order the two): seen under load.
    @task
    def slow() -> None:
        time.sleep(300)

    slow()


accord_echo()
accord_fail()
accord_paused()
accord_slow()
