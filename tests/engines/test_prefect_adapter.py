"""The ``prefect`` engine's configuration: every problem reported at once and naming its field,
at construction and through a real ``accord agent start`` (exit 2); the example config loads.
(The engine's behaviour is tested against a real Prefect: test_prefect_real.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from team_agent.config import parse_config
from team_agent.engines.base import EngineConfigError
from team_agent.engines.prefect import PrefectEngine, idempotency_key_for
from team_agent.testing import AgentProcess
from tests.engines.e2e_support import REPO


def problems(config: dict[str, object]) -> dict[str, str]:
    with pytest.raises(EngineConfigError) as info:
        PrefectEngine(config)
    return dict(info.value.problems)


def test_every_problem_is_reported_naming_its_field() -> None:
    found = problems(
        {
            "api_url": "127.0.0.1:4200/api",
            "deployment": "charge-card",
            "api_key": "k",
            "auth_string": "nocolon",
            "output_artifact": "Accord_Output",
            "non_retryable_errors": "CardDeclined",
            "poll_interval": "soon",
            "output": "result",
            "flow": "x",
        }
    )
    assert set(found) == {
        "api_url",
        "deployment",
        "api_key",
        "auth_string",
        "output_artifact",
        "non_retryable_errors",
        "poll_interval",
        "output",
        "flow",
    }
    assert "'flow name/deployment name'" in found["deployment"]
    assert "unknown key for the prefect engine" in found["flow"]
    assert problems({})["api_url"] == "prefect: is required"


async def test_a_deployment_id_or_name_is_accepted() -> None:
    # check=False: no Prefect to ask at "agent start" here (test_prefect_real.py asks a real one).
    by_id = PrefectEngine(
        {"api_url": "http://p/api", "deployment": "2b4c1b8e-7d8f-4c38-9a55-111111111111"}, check=False
    )
    by_name = PrefectEngine({"api_url": "http://p/api/", "deployment": "charge-card/accord"}, check=False)
    assert by_id.config.deployment_id == "2b4c1b8e-7d8f-4c38-9a55-111111111111"
    assert (by_name.config.flow_name, by_name.config.deployment_name) == ("charge-card", "accord")
    assert by_name.run_url("r1") == "http://p/runs/flow-run/r1"
    cloud = PrefectEngine(
        {"api_url": "https://api.prefect.cloud/api/accounts/a1/workspaces/w1", "deployment": "f/d"},
        check=False,
    )
    assert cloud.run_url("r1") == "https://app.prefect.cloud/accounts/a1/workspaces/w1/runs/flow-run/r1"
    for engine in (by_id, by_name, cloud):
        await engine.close()


def test_idempotency_keys_are_stable_per_step_and_generation() -> None:
    assert idempotency_key_for("accord", "run-1/charge") == "accord:accord:run-1/charge"
    assert idempotency_key_for("accord", "run-1/charge", 2) == "accord:accord:run-1/charge:2"


async def test_the_example_agent_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Prefect answers at the example's api_url here: the deployment is left to the first task."""
    monkeypatch.setenv("ACCORD_TOKEN", "t")
    path = REPO / "examples" / "prefect-team" / "agent.yaml"
    loaded = parse_config(path.read_text(), str(path))
    adapter = loaded.adapters["payments/charge-card@1"]
    try:
        assert isinstance(adapter, PrefectEngine)
        assert adapter.config.deployment == "charge-card/accord"
    finally:
        await adapter.close()


async def test_agent_start_refuses_a_bad_binding_with_exit_2(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "examples" / "prefect-team" / "agent.yaml").read_text())
    config["implements"]["payments/charge-card@1"]["with"]["deployment"] = "charge-card"
    config["implements"]["payments/charge-card@1"]["with"].pop("api_url")
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    agent = AgentProcess(path, workdir=tmp_path, env={"ACCORD_TOKEN": "t"}).start()
    code = await asyncio.to_thread(agent.wait, 60)
    assert code == 2, agent.log
    assert "implements.payments/charge-card@1.with.deployment" in agent.log, agent.log
    assert "implements.payments/charge-card@1.with.api_url" in agent.log, agent.log
    assert "Traceback" not in agent.log
