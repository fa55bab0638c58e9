"""The airflow and jenkins engines through a real coordinator and a real agent process, against
the faithful fakes: outputs, failures with their engine details, the trace handed on, and a
coordinator-side cancel reaching the engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.engines.airflow import TRACE_CONF_KEY
from team_agent.engines.jenkins import TASK_ID_PARAM, TRACEPARENT_PARAM
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.fakes.airflow_fake import FakeAirflow, FakeDag, FakeTask
from tests.fakes.jenkins_fake import FakeJenkins, FakeJob, Outcome
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(180)

CHARGE_CARD = (REPO / "examples" / "contracts" / "charge-card.yaml").read_text()


@pytest.fixture
async def teams(coordinator: CoordinatorProcess, tmp_path: Path) -> AsyncIterator[list[EngineTeam]]:
    made: list[EngineTeam] = []
    yield made
    for team in made:
        await asyncio.to_thread(team.stop_agents)


def airflow_binding(url: str, **extra: object) -> dict[str, object]:
    return {
        "engine": "airflow",
        "with": {
            "base_url": url,
            "dag_id": "charge_card",
            "username": "${secret:AIRFLOW_USER}",
            "password": "${secret:AIRFLOW_PASSWORD}",
            "output": {"task_id": "finalize", "key": "return_value"},
            "poll_interval": "50ms",
            "max_poll_interval": "200ms",
            **extra,
        },
    }


AIRFLOW_SECRETS = {"AIRFLOW_USER": "admin", "AIRFLOW_PASSWORD": "admin-pw"}


async def test_airflow_step_returns_the_xcom_and_carries_the_trace(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_airflow: tuple[FakeAirflow, str],
) -> None:
    fake, url = fake_airflow
    fake.add_dag(
        FakeDag(
            "charge_card",
            tasks=[FakeTask("finalize", xcom=lambda c: {"payment_ref": f"pay-{c['order_id']}"})],
        )
    )
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    teams.append(team)
    await team.start_agent(airflow_binding(url), env=AIRFLOW_SECRETS)
    run = await team.wait_run(
        await team.start_run({"order_id": "o-1", "amount_cents": 100, "card_token": "tok"})
    )
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"payment_ref": "pay-o-1"}
    (airflow_run,) = fake.runs.values()
    assert airflow_run.conf["order_id"] == "o-1"
    assert airflow_run.conf[TRACE_CONF_KEY].split("-")[1] == run.trace_id  # the DAG run joins the trace
    assert airflow_run.run_id.startswith("accord__")


async def test_airflow_failure_carries_failed_tasks_and_run_url(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_airflow: tuple[FakeAirflow, str],
) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("charge", fail=True), FakeTask("finalize")]))
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    teams.append(team)
    await team.start_agent(airflow_binding(url), env=AIRFLOW_SECRETS)
    run = await team.wait_run(await team.start_run({"order_id": "o-2", "amount_cents": 100}))
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "DagRunFailed"
    assert details["failed_tasks"] == ["charge"]
    assert details["airflow_run_url"].startswith(f"{url}/dags/charge_card/runs/accord__")
    assert details["airflow_run_url"].endswith(quote(details["dag_run_id"], safe=""))
    # DagRunFailed is retryable: each of the contract's 3 attempts ran a DAG run of its own.
    assert len(run.steps[0].attempts) == 3
    assert len(fake.runs) == 3 and details["dag_run_id"].endswith("__3")


async def test_airflow_paused_dag_fails_the_step_at_once(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_airflow: tuple[FakeAirflow, str],
) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("finalize")], is_paused=True))
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)  # max_attempts: 3
    teams.append(team)
    await team.start_agent(airflow_binding(url), env=AIRFLOW_SECRETS)
    run = await team.wait_run(await team.start_run({"order_id": "o-3", "amount_cents": 100}))
    assert run.status == pb.RUN_STATUS_FAILED
    error, _ = attempt_error(run)
    assert error.type == "DagPaused" and not error.retryable
    assert len(run.steps[0].attempts) == 1  # not retryable: no second attempt
    assert fake.triggers() == 0


async def test_coordinator_cancel_fails_the_airflow_run(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_airflow: tuple[FakeAirflow, str],
) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("slow", duration=120), FakeTask("finalize")]))
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    teams.append(team)
    await team.start_agent(airflow_binding(url), env=AIRFLOW_SECRETS)
    run_id = await team.start_run({"order_id": "o-4", "amount_cents": 100})
    await wait_until(
        lambda: any(r.state == "running" for r in fake.runs.values()), "the DAG run never started"
    )
    await team.cancel_run(run_id)
    run = await team.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_CANCELLED
    (airflow_run,) = fake.runs.values()
    # The agent learns of the cancel on its next heartbeat.
    await wait_until(lambda: airflow_run.state == "failed", f"the DAG run is still {airflow_run.state}")
    assert [ti.state for ti in airflow_run.tis] == ["failed", "skipped"]
    assert any(m == "PATCH" and s == 200 for m, _, s in fake.requests)


def jenkins_binding(url: str, **extra: object) -> dict[str, object]:
    return {
        "engine": "jenkins",
        "with": {
            "base_url": url,
            "job": "shipping/create-shipment",
            "username": "accord",
            "api_token": "${secret:JENKINS_TOKEN}",
            "parameters": {"ORDER_ID": "${input.order_id}"},
            "output_artifact": "accord-output.json",
            "poll_interval": "50ms",
            "max_poll_interval": "200ms",
            "stop_timeout": "10s",
            **extra,
        },
    }


JENKINS_PARAMS = {"ORDER_ID": "", TASK_ID_PARAM: "", TRACEPARENT_PARAM: ""}


def example_shipment(params: dict[str, str]) -> Outcome:
    """What examples/jenkins-team/Jenkinsfile computes and archives."""
    items = json.loads(params["ITEMS"] or "[]")
    output = {
        "shipment_id": "sh-" + params["ORDER_ID"],
        "express": sum(int(i.get("quantity", 1)) for i in items) <= 2,
        "carrier": "acme-freight",
    }
    return Outcome("SUCCESS", ["Book carrier"], {"accord-output.json": json.dumps(output).encode()})


async def test_jenkins_example_binding_returns_the_artifact_and_carries_the_trace(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_jenkins: tuple[FakeJenkins, str],
) -> None:
    fake, url = fake_jenkins
    parameters = {"ORDER_ID": "", "PAYMENT_REF": "", "ITEMS": "[]", TASK_ID_PARAM: "", TRACEPARENT_PARAM: ""}
    fake.add_job(FakeJob("shipping/create-shipment", parameters=parameters, behaviour=example_shipment))
    contract = (REPO / "examples" / "contracts" / "create-shipment.yaml").read_text()
    team = await engine_team(coordinator, tmp_path, team="shipping", contract_source=contract)
    teams.append(team)
    config = yaml.safe_load((REPO / "examples" / "jenkins-team" / "agent.yaml").read_text())
    binding = config["implements"]["shipping/create-shipment@1"]
    binding["with"].update(base_url=url, poll_interval="50ms", max_poll_interval="200ms")
    await team.start_agent(binding, env={"JENKINS_USER": "accord", "JENKINS_API_TOKEN": "11aa22bb"})
    value = {"order_id": "o-5", "payment_ref": "pay-1", "items": [{"sku": "a", "quantity": 1}]}
    run = await team.wait_run(await team.start_run(value))
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {
        "shipment_id": "sh-o-5",
        "express": True,
        "carrier": "acme-freight",
    }
    (build,) = fake.builds["shipping/create-shipment"]
    assert build.params["ITEMS"] == '[{"sku":"a","quantity":1}]'
    assert build.params[TRACEPARENT_PARAM].split("-")[1] == run.trace_id
    assert build.params[TASK_ID_PARAM].startswith("accord-")


async def test_jenkins_failure_carries_the_console_tail(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_jenkins: tuple[FakeJenkins, str],
) -> None:
    fake, url = fake_jenkins
    fake.add_job(
        FakeJob(
            "shipping/create-shipment",
            parameters=dict(JENKINS_PARAMS),
            behaviour=lambda p: Outcome("FAILURE", ["booking carrier", "ERROR: carrier API down"]),
        )
    )
    team = await engine_team(coordinator, tmp_path, team="shipping")
    teams.append(team)
    await team.start_agent(jenkins_binding(url), env={"JENKINS_TOKEN": "11aa22bb"})
    run = await team.wait_run(await team.start_run({"order_id": "o-6"}))
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "BuildFailed"
    assert details["result"] == "FAILURE"
    assert "ERROR: carrier API down" in details["console_tail"]
    assert details["build_url"] == f"{url}/job/shipping/job/create-shipment/1/"


@pytest.mark.parametrize("where", ["queued", "running"])
async def test_coordinator_cancel_reaches_jenkins(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    fake_jenkins: tuple[FakeJenkins, str],
    where: str,
) -> None:
    fake, url = fake_jenkins
    job = FakeJob(
        "shipping/create-shipment",
        parameters=dict(JENKINS_PARAMS),
        queue_wait=120 if where == "queued" else 0,
        duration=120,
        stop_delay=0.3,
    )
    fake.add_job(job)
    team = await engine_team(coordinator, tmp_path, team="shipping")
    teams.append(team)
    await team.start_agent(jenkins_binding(url), env={"JENKINS_TOKEN": "11aa22bb"})
    run_id = await team.start_run({"order_id": "o-7"})
    await wait_until(
        lambda: (where == "queued" and fake.queue) or (where == "running" and fake.builds[job.path]),
        f"the build never got {where}",
    )
    await team.cancel_run(run_id)
    run = await team.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_CANCELLED
    # The agent learns of the cancel on its next heartbeat, then tells Jenkins. (The fake marks
    # a queue item cancelled only when it is next asked about it, which nobody does then: the
    # request is the event.)
    if where == "queued":
        cancel = ("POST", "/queue/cancelItem", 204)
        await wait_until(lambda: cancel in fake.requests, "the cancel never reached the queued item")
        assert fake.builds[job.path] == []
    else:
        stop = ("POST", "/job/shipping/job/create-shipment/1/stop", 302)
        await wait_until(
            lambda: stop in fake.requests and fake.builds[job.path][0].result == "ABORTED",
            "the running build was not aborted",
        )
