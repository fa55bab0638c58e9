"""The audit log in the open, end to end: a real coordinator (on SQLite, and on PostgreSQL), a
test agent over the real gRPC API, and ``accord audit`` as a team and as the admin.

Every kind of change is made once (teams, contracts registered and refused, workflows,
deprecations, an agent's registration and its team's defaults, an event, runs started and
cancelled, the admin acting on a team's objects) and the log lists each with the team it
belongs to, who made it, and whether it was a platform intervention. A team reads only its own
entries; ``--since`` and ``--json`` work; a bad ``--since`` is one line and exit 2.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import CoordinatorProcess
from tests.support.docs import documented_audit_actions
from tests.support.events import handled
from tests.support.postgres import TestDatabase
from tests.support.scenario import contract, start_run, wait_run
from tests.support.wait import wait_until

CHARGE = contract("payments/charge")
# Requires a field 1.0.0 did not: not compatible with major 1, so refused.
CHARGE_BREAKING = contract(
    "payments/charge",
    "1.1.0",
    input_required="[order_id, amount]",
    input_props="{order_id: {type: string}, amount: {type: integer}}",
)
REFUND = contract("payments/refund")
PACK = contract("shipping/pack")
ORDER_PAID = """
contract: payments/order-paid
version: 1.0.0
kind: event
description: An order was paid.
payload:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
"""
CHECKOUT = """
workflow: shipping/checkout
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
triggers:
  - on: payments/order-paid@^1
    input: {order_id: "${event.order_id}"}
"""
REFUND_FLOW = """
workflow: shipping/refund-flow
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  refund:
    contract: payments/refund@^1
    input: {order_id: "${input.order_id}"}
"""
# No agent serves shipping/pack: its runs stay running until cancelled.
STUCK = """
workflow: shipping/stuck
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  pack:
    contract: shipping/pack@^1
    input: {order_id: "${input.order_id}"}
"""
DAY_MS = 86_400_000


@pytest.fixture(params=["sqlite", "postgres"])
def coordinator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CoordinatorProcess, str]]:
    """A real coordinator, and how to reach its store directly ("" for its SQLite file)."""
    url = ""
    database: TestDatabase | None = None
    if request.param == "postgres":
        database = TestDatabase.create()
        url = database.url
    proc = CoordinatorProcess.start(tmp_path / "home", *(("--store", url) if url else ()))
    try:
        yield proc, url
    finally:
        proc.stop()
        if database is not None:
            database.drop()


def _insert_entries(proc: CoordinatorProcess, url: str, at_ms: int, objects: list[str]) -> None:
    """Entries written straight into the store: as changes made long ago would have left them
    (no API backdates one), or more than one page of them."""
    rows = [(at_ms, "payments", "contract.register", o, "payments", False, "{}") for o in objects]
    columns = "at_ms, actor, action, object, owner_team, platform_intervention, details_json"
    if url:
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO audit ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    else:
        with sqlite3.connect(proc.db, timeout=30) as conn:
            conn.executemany(f"INSERT INTO audit ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


async def _audit_json(proc: CoordinatorProcess, token: str, *args: str) -> list[dict[str, Any]]:
    done = await proc.acli("audit", "--json", "--limit", "1000", *args, token=token)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries


def _kinds(entries: list[dict[str, Any]]) -> set[tuple[str, str, str, bool]]:
    return {(e["action"], e["actor"], e["owner_team"], e["platform_intervention"]) for e in entries}


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


async def _make_every_kind_of_change(proc: CoordinatorProcess) -> dict[str, str]:
    tokens = {team: await proc.create_team(team) for team in ("payments", "shipping")}
    for text in (CHARGE, REFUND, ORDER_PAID):
        assert (await proc.register_contract(tokens["payments"], text)).registered
    assert (await proc.register_contract(tokens["shipping"], PACK)).registered
    with pytest.raises(FailedPreconditionError):
        await proc.register_contract(tokens["payments"], CHARGE_BREAKING)
    for text in (CHECKOUT, REFUND_FLOW, STUCK):
        assert (await proc.register_workflow(tokens["shipping"], text)).registered

    async def charge(call: Call) -> dict[str, Any]:
        return {"ref": f"pay-{call.input['order_id']}"}

    agent = TestAgent(
        proc.address,
        tokens["payments"],
        "payments",
        {"payments/charge@1": charge},
        team_retry=common_pb.RetryPolicy(max_attempts=3),
    )
    await agent.start()
    try:
        await agent.register()  # again, unchanged (as after a network blip): not a change
        async with proc.client(tokens["shipping"]) as shipping:
            run = (await start_run(shipping, "shipping/checkout", {"order_id": "o-1"})).run
            assert (await wait_run(shipping, run.run_id)).status == pb.RUN_STATUS_SUCCEEDED
        async with proc.client(tokens["payments"]) as payments:
            published = await payments.coordinator.PublishEvent(
                pb.PublishEventRequest(contract="payments/order-paid@1", payload_json='{"order_id": "o-2"}')
            )
            [triggered] = (await handled(payments, published.event.event_id)).triggered_runs
            await payments.coordinator.DeprecateContract(
                pb.DeprecateContractRequest(ref="payments/refund@1", sunset="2031-01-01")
            )
        async with proc.client(tokens["shipping"]) as shipping:
            assert (await wait_run(shipping, triggered)).status == pb.RUN_STATUS_SUCCEEDED
            own = (await start_run(shipping, "shipping/stuck", {"order_id": "o-3"})).run
            await shipping.coordinator.CancelRun(pb.CancelRunRequest(run_id=own.run_id, reason="by us"))
            theirs = (await start_run(shipping, "shipping/stuck", {"order_id": "o-4"})).run
            refund = (await start_run(shipping, "shipping/refund-flow", {"order_id": "o-5"})).run
    finally:
        await agent.stop()

    # The admin acts on the teams' objects: each a platform intervention.
    async with proc.client() as admin:
        await admin.coordinator.CancelRun(pb.CancelRunRequest(run_id=theirs.run_id, reason="platform"))
        await admin.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(ref="payments/charge@1", sunset="2031-01-01")
        )
        # ... and finishes a stuck task of payments' itself, as an agent of its own.
        await admin.agent.RegisterAgent(
            agent_pb.RegisterAgentRequest(
                agent_id="platform-fixer",
                bindings=[agent_pb.Binding(contract="payments/refund", major=1, engine="manual")],
                concurrency=1,
            )
        )
        task = await wait_until(
            lambda: _poll(admin, "platform-fixer"), "the refund task offered to the admin's agent"
        )
        await admin.agent.CompleteTask(
            agent_pb.CompleteTaskRequest(
                agent_id="platform-fixer", attempt_id=task.attempt_id, output_json='{"ref": "manual"}'
            )
        )
        assert (await wait_run(admin, refund.run_id)).status == pb.RUN_STATUS_SUCCEEDED
        rotated = await admin.coordinator.RotateTeamToken(pb.RotateTeamTokenRequest(name="payments"))
    tokens["payments"] = rotated.token
    return tokens


async def _poll(client: Any, agent_id: str) -> agent_pb.Task | None:
    answer = await client.agent.PollTask(agent_pb.PollTaskRequest(agent_id=agent_id, wait_ms=1000))
    return answer.task if answer.HasField("task") else None


async def test_every_kind_of_change_is_in_the_log_with_its_team_and_intervention_flag(
    coordinator: tuple[CoordinatorProcess, str],
) -> None:
    proc, url = coordinator
    tokens = await _make_every_kind_of_change(proc)

    everything = await _audit_json(proc, proc.admin_token)
    kinds = _kinds(everything)
    expected = {
        ("team.create", "admin", "payments", False),
        ("team.create", "admin", "shipping", False),
        ("contract.register", "payments", "payments", False),
        ("contract.register", "shipping", "shipping", False),
        ("contract.register.refused", "payments", "payments", False),
        ("workflow.register", "shipping", "shipping", False),
        ("agent.register", "payments", "payments", False),
        ("team.defaults", "payments", "payments", False),
        ("run.start", "shipping", "shipping", False),
        ("event.publish", "payments", "payments", False),
        ("contract.deprecate", "payments", "payments", False),
        ("run.cancel", "shipping", "shipping", False),
        # the admin on the teams' objects
        ("run.cancel", "admin", "shipping", True),
        ("contract.deprecate", "admin", "payments", True),
        ("agent.register", "admin", "payments", True),
        ("task.complete", "admin", "payments", True),
        ("team.rotate_token", "admin", "payments", True),
    }
    assert expected <= kinds, sorted(expected - kinds)
    assert everything == sorted(everything, key=lambda e: e["id"])  # oldest first
    # docs/production.md says what each of them means.
    undocumented = {e["action"] for e in everything} - documented_audit_actions()
    assert not undocumented, sorted(undocumented)

    def only(action: str, actor: str) -> list[dict[str, Any]]:
        return [e for e in everything if e["action"] == action and e["actor"] == actor]

    # Registering again unchanged wrote nothing; each start is one entry (the triggered one too).
    assert len(only("agent.register", "payments")) == 1
    assert len(only("run.start", "shipping")) == 5
    [refused] = only("contract.register.refused", "payments")
    assert refused["object"] == "payments/charge@1.1.0"
    assert "not compatible with major 1" in refused["details"]["reason"]
    [event] = only("event.publish", "payments")
    assert event["details"]["contract"] == "payments/order-paid@1.0.0"
    # Written with the event, before its triggers run (accord event show names the runs).
    assert event["details"] == {"contract": "payments/order-paid@1.0.0"}
    [admin_cancel] = only("run.cancel", "admin")
    assert admin_cancel["details"] == {"reason": "platform"}

    # A team sees what it owns or made, nothing of the other's.
    for team, other in (("payments", "shipping"), ("shipping", "payments")):
        seen = await _audit_json(proc, tokens[team])
        assert seen and all(team in (e["owner_team"], e["actor"]) for e in seen), seen
        assert {e["id"] for e in seen} == {
            e["id"] for e in everything if team in (e["owner_team"], e["actor"])
        }
        assert not any(e["owner_team"] == other and e["actor"] != team for e in seen)
        refused_read = await proc.acli("audit", "--team", other, token=tokens[team])
        _one_line_error(refused_read, 3, f"team {team} may read only its own audit entries")
    # The admin narrows to one team.
    assert {e["id"] for e in await _audit_json(proc, proc.admin_token, "--team", "shipping")} == {
        e["id"] for e in everything if "shipping" in (e["owner_team"], e["actor"])
    }
    unknown = await proc.acli("audit", "--team", "nobody")
    _one_line_error(unknown, 2, "--team 'nobody'", "no such team")

    # --since: an entry of 30 days ago is older than 7d, and still in the whole log.
    _insert_entries(proc, url, int(time.time() * 1000) - 30 * DAY_MS, ["payments/ancient@1.0.0"])
    recent = await _audit_json(proc, proc.admin_token, "--since", "7d")
    assert {e["id"] for e in recent} == {e["id"] for e in everything}
    whole = await _audit_json(proc, proc.admin_token)
    assert [e["object"] for e in whole if e["object"] == "payments/ancient@1.0.0"] == [
        "payments/ancient@1.0.0"
    ]
    assert len(await _audit_json(proc, tokens["payments"], "--since", "60d")) == len(
        await _audit_json(proc, tokens["payments"])
    )

    # --limit: the newest N, said to be only those; and the table for people.
    newest = await proc.acli("audit", "--json", "--limit", "3")
    assert newest.returncode == 0, newest.stderr
    assert [e["id"] for e in json.loads(newest.stdout)] == [e["id"] for e in whole[-3:]]
    assert "the newest 3 entries" in newest.stderr
    table = await proc.acli("audit", "--since", "12h")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "ACTOR", "TEAM", "ACTION", "OBJECT", "DETAILS"]
    assert len(lines) == 1 + len(everything)
    [fixer] = [line for line in lines if "task.complete" in line]
    assert "platform intervention" in fixer and "payments" in fixer

    # More than one page (the server gives at most 1000 a call): each entry once, in order.
    _insert_entries(proc, url, int(time.time() * 1000), [f"payments/bulk-{i}@1.0.0" for i in range(1100)])
    pages = await proc.acli("audit", "--json", "--limit", "2000")
    assert pages.returncode == 0, pages.stderr
    ids = [e["id"] for e in json.loads(pages.stdout)]
    assert len(ids) == len(whole) + 1100 and ids == sorted(set(ids))
    assert pages.stderr == ""  # all of them: no "the newest N" note
    # A duration reaching before 1970 is everything, not an error.
    assert [
        e["id"] for e in await _audit_json(proc, proc.admin_token, "--since", "99999w", "--limit", "2000")
    ] == ids

    # Bad input: one line, exit 2, nothing else.
    for bad in ("banana", "0", "-1d"):
        _one_line_error(await proc.acli("audit", "--since", bad), 2, "--since")
