"""The engine examples stay valid: their agent configs load with the agent's own config loader,
which builds each binding's adapter and so checks every ``with:`` key."""

from __future__ import annotations

import pytest

from team_agent.config import parse_config
from team_agent.engines.airflow import AirflowEngine
from team_agent.engines.jenkins import JenkinsEngine
from tests.engines.e2e_support import REPO

SECRETS = {
    "ACCORD_TOKEN": "t",
    "AIRFLOW_USER": "admin",
    "AIRFLOW_PASSWORD": "pw",
    "JENKINS_USER": "accord",
    "JENKINS_API_TOKEN": "tok",
}


@pytest.mark.parametrize(
    ("path", "binding", "engine"),
    [
        ("examples/airflow-team/agent.yaml", "payments/charge-card@1", AirflowEngine),
        ("examples/jenkins-team/agent.yaml", "shipping/create-shipment@1", JenkinsEngine),
    ],
)
async def test_example_agent_configs_load(
    path: str, binding: str, engine: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)  # the env secrets provider reads the process environment
    loaded = parse_config((REPO / path).read_text(), path)
    adapter = loaded.adapters[binding]
    try:
        assert isinstance(adapter, engine)
    finally:
        await adapter.close()
