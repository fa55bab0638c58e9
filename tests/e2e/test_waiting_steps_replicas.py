"""Waiting steps on replicas (real coordinator processes on one PostgreSQL database): a run that
waits for an approval, started through one replica, is answered through another after the first
was killed; a waiting step's timeout armed by the dead replica fires from the living one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas
from tests.support.scenario import start_run, step, wait_run
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

WORKFLOW = """
workflow: shipping/{name}
input: {{type: object}}
steps:
  approve:
    wait_for:
      approval: {approval}
output: {{approved: "${{steps.approve.output.approved}}", by: "${{steps.approve.output.by}}"}}
"""


async def test_an_approval_is_answered_through_another_replica_after_a_kill_9(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2)
    try:
        a, b = replicas[0], replicas[1]
        shipping = await a.create_team("shipping")
        finance = await a.create_team("finance")
        await a.register_workflow(shipping, WORKFLOW.format(name="manual", approval="{by: [finance]}"))
        await a.register_workflow(
            shipping,
            WORKFLOW.format(name="timed", approval="{by: [finance], timeout: 3s, on_timeout: approve}"),
        )
        async with a.client(shipping) as client:
            manual = (await start_run(client, "shipping/manual", {})).run.run_id
            timed = (await start_run(client, "shipping/timed", {})).run.run_id

            async def waiting(run_id: str):
                run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
                return step(run, "approve").waiting_reason.startswith("waiting for approval by finance")

            for run_id in (manual, timed):
                await wait_until(lambda r=run_id: waiting(r), f"run {run_id} waiting")
        a.kill9()

        answered = await b.acli("runs", "approve", manual, "approve", "--comment", "ok", token=finance)
        assert answered.returncode == 0, answered
        async with b.client(shipping) as client:
            run = await wait_run(client, manual)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            assert json.loads(run.output_json) == {"approved": True, "by": "finance"}
            run = await wait_run(client, timed)  # its timer, armed through a, fires from b
            assert run.status == pb.RUN_STATUS_SUCCEEDED and json.loads(run.output_json)["approved"] is True
    finally:
        replicas.kill_all()
