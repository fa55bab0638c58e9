"""The three-step chain as an Airflow 3 DAG (copied into a temp dags folder by the driver)."""

from airflow.sdk import dag, task


@dag(
    dag_id="accord_chain",
    schedule=None,
    catchup=False,
    tags=["bench"],
    is_paused_upon_creation=False,
)
def accord_chain():
    @task
    def step_a() -> dict:
        return {"step": "a"}

    @task
    def step_b(prev: dict) -> dict:
        return {"step": "b", "prev": prev["step"]}

    @task
    def step_c(prev: dict) -> dict:
        return {"step": "c", "prev": prev["step"]}

    step_c(step_b(step_a()))


accord_chain()
