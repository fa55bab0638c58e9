"""A token refused while a call made with it is still open ends that call: a run watch (WatchRun,
what ``accord run --wait`` follows) ends with UNAUTHENTICATED once its token is revoked or
expires, on the coordinator that revoked it and on another sharing its PostgreSQL database; a v1
long poll (PollTask) ends the same way and never hands a task to the revoked agent: a task
claimed for it is given back and taken by a valid agent.

Real coordinator processes and the real CLI; the last test runs the coordinator in the test's
process to revoke the token at the very moment a task is claimed for the poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import UnauthenticatedError
from coordinator.client import AsyncClient
from coordinator.config import CoordinatorConfig
from coordinator.server import Coordinator
from coordinator.store.records import Changes
from coordinator.store.sqlite import SqliteStore
from coordinator.tokens import hash_token
from tests.support.coordinator import CoordinatorProcess
from tests.support.inprocess import ADMIN, PAYMENTS, NoSpans, seed_payments
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas
from tests.support.scenario import TERMINAL, contract, start_run, wait_run
from tests.support.wait import wait_until

FLOW = """
workflow: crm/flow
input: {type: object}
steps:
  notify: {contract: crm/notify@^1, input: {order_id: "o-1"}}
"""
OTHER_FLOW = """
workflow: crm/other-flow
input: {type: object}
steps:
  other: {contract: crm/other@^1, input: {order_id: "o-2"}}
"""
# Only an upper bound against a hang: each wait ends at the event it waits for.
HANG_S = 30.0


class _Watch:
    """A WatchRun stream read in the background: what it received, and how it ended."""

    def __init__(self, client: AsyncClient, run_id: str) -> None:
        self.runs: list[pb.Run] = []
        self._client = client
        self.task = asyncio.create_task(self._read(run_id))

    async def _read(self, run_id: str) -> None:
        stream = self._client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=run_id))
        async for message in stream:
            self.runs.append(message.run)

    async def first_message(self) -> pb.Run:
        """The first message: the stream is open and its token was accepted."""
        await wait_until(lambda: self.runs or self.task.done(), "the watch's first message", within=HANG_S)
        if not self.runs:
            await self.task  # ended without one: its error
        return self.runs[0]

    async def end(self) -> BaseException | None:
        """How the stream ended: None when it ended as a watch does (its run ended), else the
        error."""
        await asyncio.wait((self.task,), timeout=HANG_S)
        assert self.task.done(), f"the watch did not end in {HANG_S}s"
        return self.task.exception()


async def _crm(coordinator: CoordinatorProcess) -> str:
    token = await coordinator.create_team("crm")
    await coordinator.register_contract(token, contract("crm/notify"))
    await coordinator.register_workflow(token, FLOW)
    return token


async def _token(coordinator: CoordinatorProcess, crm: str, name: str, *args: str) -> str:
    made = await coordinator.acli("team", "token", "create", name, *args, token=crm)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


async def test_a_watch_ends_when_its_token_is_revoked(coordinator: CoordinatorProcess) -> None:
    crm = await _crm(coordinator)
    watcher = await _token(coordinator, crm, "watcher")
    async with coordinator.client(crm) as client:
        run = (await start_run(client, "crm/flow", {})).run  # no agent: it waits
    async with coordinator.client(watcher) as watching, coordinator.client(crm) as other:
        revoked_watch, kept_watch = _Watch(watching, run.run_id), _Watch(other, run.run_id)
        await revoked_watch.first_message()
        await kept_watch.first_message()

        revoked = await coordinator.acli("team", "token", "revoke", "watcher", token=crm)
        assert revoked.returncode == 0, revoked.stderr
        error = await revoked_watch.end()
        assert isinstance(error, UnauthenticatedError), repr(error)
        assert str(error) == "WatchRun ended: unknown or revoked token"

        # The run goes on, and so does the watch made with a token still valid.
        assert not kept_watch.task.done()
        assert all(r.status not in TERMINAL for r in revoked_watch.runs)
        await other.coordinator.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="done"))
        assert await kept_watch.end() is None
        assert kept_watch.runs[-1].status == pb.RUN_STATUS_CANCELLED


async def test_a_watch_ends_when_its_token_expires(coordinator: CoordinatorProcess) -> None:
    crm = await _crm(coordinator)
    async with coordinator.client(crm) as client:
        run = (await start_run(client, "crm/flow", {})).run
    # Made last, and long enough to open the watch first even on a loaded machine (the CLI that
    # makes it takes a second or two there); the test then waits for the expiry itself.
    brief = await _token(coordinator, crm, "brief", "--expires", "10s")
    async with coordinator.client(brief) as watching:
        watch = _Watch(watching, run.run_id)
        await watch.first_message()
        error = await watch.end()
    assert isinstance(error, UnauthenticatedError), repr(error)
    assert str(error).startswith("WatchRun ended: token 'brief' of team crm expired at 20"), str(error)
    assert "accord team token create NAME --team crm" in str(error)
    async with coordinator.client(crm) as client:
        assert (
            await client.coordinator.GetRun(pb.GetRunRequest(run_id=run.run_id))
        ).run.status not in TERMINAL


@pytest.mark.postgres
async def test_a_watch_on_another_replica_ends_when_its_token_is_revoked(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2)
    a, b = replicas[0], replicas[1]
    try:
        crm = await _crm(a)
        watcher = await _token(a, crm, "watcher")
        async with a.client(crm) as client:
            run = (await start_run(client, "crm/flow", {})).run
        async with b.client(watcher) as watching:
            watch = _Watch(watching, run.run_id)  # on b: a token made on a, read from the store
            await watch.first_message()
            revoked = await a.acli("team", "token", "revoke", "watcher", token=crm)
            assert revoked.returncode == 0, revoked.stderr
            error = await watch.end()  # b reads the tokens again every 0.5 s
        assert isinstance(error, UnauthenticatedError), repr(error)
        assert str(error) == "WatchRun ended: unknown or revoked token"
    finally:
        replicas.kill_all()


def _binding(name: str) -> agent_pb.Binding:
    return agent_pb.Binding(contract=name, major=1, engine="python")


async def test_a_long_poll_ends_when_its_token_is_revoked_and_the_task_goes_to_a_valid_agent(
    coordinator: CoordinatorProcess,
) -> None:
    crm = await _crm(coordinator)
    await coordinator.register_contract(crm, contract("crm/other"))
    await coordinator.register_workflow(crm, OTHER_FLOW)
    poller = await _token(coordinator, crm, "poller")
    async with coordinator.client(poller) as polling, coordinator.client(crm) as client:
        await polling.agent.RegisterAgent(
            agent_pb.RegisterAgentRequest(
                agent_id="poller-1", bindings=[_binding("crm/notify"), _binding("crm/other")]
            )
        )
        # A task of crm/other the poll below does not ask for: its waiting reason tells when the
        # agent's long poll is open at the coordinator.
        marker = (await start_run(client, "crm/other-flow", {})).run
        poll = asyncio.create_task(
            polling.agent.PollTask(
                agent_pb.PollTaskRequest(agent_id="poller-1", contracts=["crm/notify@1"], wait_ms=60_000)
            )
        )

        async def poll_open() -> bool:
            run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=marker.run_id))).run
            return "being handed to an agent" in run.steps[0].waiting_reason

        await wait_until(poll_open, "the agent's long poll is open")
        revoked = await coordinator.acli("team", "token", "revoke", "poller", token=crm)
        assert revoked.returncode == 0, revoked.stderr
        # Offered after the revocation: never to the revoked agent's poll.
        run = (await start_run(client, "crm/flow", {})).run
        with pytest.raises(UnauthenticatedError) as refused:
            await asyncio.wait_for(poll, HANG_S)
        assert str(refused.value) == "PollTask ended: unknown or revoked token"

        await client.agent.RegisterAgent(
            agent_pb.RegisterAgentRequest(agent_id="valid-1", bindings=[_binding("crm/notify")])
        )
        answer = await client.agent.PollTask(
            agent_pb.PollTaskRequest(
                agent_id="valid-1", contracts=["crm/notify@1"], wait_ms=int(HANG_S * 1000)
            )
        )
        assert answer.task.run_id == run.run_id and answer.task.attempt == 1
        await client.agent.CompleteTask(
            agent_pb.CompleteTaskRequest(
                agent_id="valid-1",
                attempt_id=answer.task.attempt_id,
                output_json='{"ref": "r"}',
                request_id="r1",
            )
        )
        assert (await wait_run(client, run.run_id)).status == pb.RUN_STATUS_SUCCEEDED


class _RevokingStore(SqliteStore):
    """The real store; once a task is claimed for ``revoke_for`` (its agent id), that agent's
    token is refused at once, before its poll could answer: as a revocation arriving between
    the claim's commit and the poll's answer."""

    revoke_for = ""
    revoke: Any = None

    async def apply(self, changes: Changes) -> None:
        await super().apply(changes)
        if self.revoke_for and any(a.agent_id == self.revoke_for for a in changes.attempts):
            self.revoke_for = ""
            self.revoke()


@pytest.fixture
async def inprocess(tmp_path: Path) -> AsyncIterator[Coordinator]:
    store = _RevokingStore(tmp_path / "coordinator.db")
    coordinator = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), store=store, span_sink=NoSpans()
    )
    await coordinator.start()
    try:
        await seed_payments(coordinator)
        yield coordinator
    finally:
        await coordinator.stop(grace=0)


async def test_a_task_claimed_for_a_poll_whose_token_is_revoked_then_is_given_back(
    inprocess: Coordinator,
) -> None:
    teams, store = inprocess.teams, inprocess.store
    assert isinstance(store, _RevokingStore)
    _, poller = await teams.create_token(ADMIN, "payments", "poller")
    _, valid = await teams.create_token(ADMIN, "payments", "valid")
    revoking: list[asyncio.Task[Any]] = []

    def revoke() -> None:
        inprocess.authority.drop(hash_token(poller))  # refused here at once, as revoke_token does
        revoking.append(asyncio.ensure_future(teams.revoke_token(ADMIN, "payments", "poller")))

    def polling() -> bool:
        return inprocess.dispatcher.presence(0.0).get("payments-1", 0) > 0

    store.revoke, store.revoke_for = revoke, "payments-1"
    async with (
        AsyncClient(inprocess.address, poller) as agent,
        AsyncClient(inprocess.address, valid) as client,
    ):
        poll = asyncio.create_task(
            agent.agent.PollTask(agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=60_000))
        )
        await wait_until(polling, "the agent's long poll is open")
        view, _ = await inprocess.engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
        with pytest.raises(UnauthenticatedError) as refused:
            await asyncio.wait_for(poll, HANG_S)
        assert str(refused.value) == "PollTask ended: unknown or revoked token"
        assert revoking, "no task was claimed for the revoked agent's poll"
        await asyncio.gather(*revoking)

        # The attempt claimed for it was given back at once (not left to its lease), and the
        # task is offered again: the same agent with a valid token takes it.
        answer = await client.agent.PollTask(
            agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=int(HANG_S * 1000))
        )
        assert answer.task.run_id == view.run.run_id and answer.task.attempt == 2
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=view.run.run_id))).run
        given_back = run.steps[0].attempts[0]
        assert given_back.number == 1 and given_back.status == pb.ATTEMPT_STATUS_CANCELLED
        assert given_back.error.type == "Released", given_back.error
