"""DAGs the real-Airflow-2 tests trigger (tests/engines/test_airflow2_real.py), written with
Airflow 2's own API (``airflow.decorators``; Airflow 3's DAGs import ``airflow.sdk``). Parsed by
Airflow 2's scheduler in its own virtual environment."""

from __future__ import annotations

from airflow.decorators import dag, task
from airflow.operators.python import get_current_context

DEFAULTS = {"retries": 0}


@dag(dag_id="accord_echo", schedule=None, catchup=False, default_args=DEFAULTS, tags=["accord-test"])
def accord_echo():
    @task
    def finalize() -> dict:
        conf = get_current_context()["dag_run"].conf or {}
        return {"payment_ref": f"pay-{conf['order_id']}", "amount_cents": conf.get("amount_cents", 0)}

    finalize()


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


accord_echo()
accord_fail()
