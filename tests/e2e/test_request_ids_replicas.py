"""Mutating requests sent again with the same request id, to another replica on the same
PostgreSQL database, do their work once (docs/production.md, "Which calls are safe to retry").

The same request to replica A, then again to B (a client whose answer from A was lost): B
answers what A answered and changes nothing more, counted in the database (audit entries,
teams, tokens); a request that made a token is answered with an error saying what to do, and no
second token exists. The same id with another request is INVALID_ARGUMENT. Through the real CLI,
with A behind a proxy that delivers the request and cuts the connection as A answers: the CLI
moves on to B with the same id.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

import coordinator.cli.server_cmd  # noqa: F401 - registers `coordinator start`
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError, InvalidArgumentError
from tests.support.coordinator import ACCORD, CoordinatorProcess
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas
from tests.support.scenario import contract

pytestmark = pytest.mark.postgres

ONE_STEP = """
workflow: payments/flow
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.charge.output.ref}"}
"""

POLICY = """\
rules:
  - id: contract-description
    applies_to: contract
    level: advise
    message: "contracts should say what they do"
    condition: {required: [description]}
"""


def _count(url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def _audited(url: str, action: str) -> int:
    return _count(url, "SELECT count(*) FROM audit WHERE action = %s", action)


@pytest.fixture
def replicas(pg_database: TestDatabase, tmp_path: Path) -> Any:
    started = Replicas.start(tmp_path, pg_database.schema_url(), 2)
    try:
        yield started
    finally:
        started.kill_all()


async def _twice(a: CoordinatorProcess, b: CoordinatorProcess, token: str, name: str, request: Any) -> Any:
    """``request`` sent to A, then the very same request (its id too) to B; B's answer, checked
    to be A's."""
    async with a.client(token) as to_a, b.client(token) as to_b:
        first = await getattr(to_a.coordinator, name)(request)
        again = await getattr(to_b.coordinator, name)(request)
    assert again == first
    return first


async def test_a_contract_workflow_deprecation_policy_and_cancel_sent_again_to_another_replica_apply_once(
    replicas: Replicas,
) -> None:
    a, b = replicas
    url = replicas.url
    token = await a.create_team("payments")

    def rid() -> str:
        return uuid.uuid4().hex

    registered = await _twice(
        a,
        b,
        token,
        "RegisterContract",
        pb.RegisterContractRequest(
            source_text=contract("payments/charge"), source_name="charge.yaml", request_id=rid()
        ),
    )
    assert registered.registered
    assert _audited(url, "contract.register") == 1

    workflow = await _twice(
        a,
        b,
        token,
        "RegisterWorkflow",
        pb.RegisterWorkflowRequest(source_text=ONE_STEP, source_name="flow.yaml", request_id=rid()),
    )
    assert workflow.registered and workflow.workflow.version == 1
    assert _audited(url, "workflow.register") == 1

    await _twice(
        a,
        b,
        token,
        "DeprecateContract",
        pb.DeprecateContractRequest(ref="payments/charge@1", sunset="2030-01-01", request_id=rid()),
    )
    assert _audited(url, "contract.deprecate") == 1

    applied = await _twice(
        a,
        b,
        replicas.admin_token,
        "ApplyPolicy",
        pb.ApplyPolicyRequest(source_text=POLICY, source_name="policy.yaml", request_id=rid()),
    )
    assert applied.applied
    assert _audited(url, "policy.apply") == 1

    async with a.client(token) as client:  # no agent: the run waits for one
        started = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="payments/flow", input_json='{"order_id": "o-1"}')
        )
    cancelled = await _twice(
        a,
        b,
        token,
        "CancelRun",
        pb.CancelRunRequest(run_id=started.run.run_id, reason="not needed", request_id=rid()),
    )
    assert cancelled.run.status == pb.RUN_STATUS_CANCELLED
    assert _audited(url, "run.cancel") == 1


async def test_a_team_or_token_made_again_through_another_replica_is_refused_saying_what_to_do(
    replicas: Replicas,
) -> None:
    a, b = replicas
    url = replicas.url
    create = pb.CreateTeamRequest(name="payments", request_id=uuid.uuid4().hex)
    async with a.client() as to_a, b.client() as to_b:
        made = await to_a.coordinator.CreateTeam(create)
        with pytest.raises(FailedPreconditionError) as refused:
            await to_b.coordinator.CreateTeam(create)
    assert made.token
    message = str(refused.value)
    assert f"this request (id {create.request_id}) was already applied" in message
    assert "accord team rotate-token payments --grace 0" in message
    assert made.token not in message
    assert _count(url, "SELECT count(*) FROM teams WHERE name = 'payments'") == 1
    assert _count(url, "SELECT count(*) FROM tokens WHERE team = 'payments'") == 1
    assert _audited(url, "team.create") == 1
    # Nothing of the token is in the request records: the answer was not stored.
    assert _count(url, "SELECT count(*) FROM requests WHERE answer_json LIKE %s", f"%{made.token}%") == 0

    named = pb.CreateTeamTokenRequest(team="payments", name="ci", request_id=uuid.uuid4().hex)
    async with a.client() as to_a, b.client() as to_b:
        ci = await to_a.coordinator.CreateTeamToken(named)
        with pytest.raises(FailedPreconditionError) as refused:
            await to_b.coordinator.CreateTeamToken(named)
    assert ci.token
    assert "revoke it with `accord team token revoke ci --team payments`" in str(refused.value)
    assert _count(url, "SELECT count(*) FROM tokens WHERE team = 'payments' AND name = 'ci'") == 1
    assert _audited(url, "token.create") == 1

    rotate = pb.RotateTeamTokenRequest(name="payments", request_id=uuid.uuid4().hex)
    async with a.client() as to_a, b.client() as to_b:
        await to_a.coordinator.RotateTeamToken(rotate)
        with pytest.raises(FailedPreconditionError) as refused:
            await to_b.coordinator.RotateTeamToken(rotate)
    assert "accord team rotate-token payments --grace 0" in str(refused.value)
    # default (new), default-old (the one it replaced), ci: no second rotation
    assert _count(url, "SELECT count(*) FROM tokens WHERE team = 'payments'") == 3

    revoke = pb.RevokeTeamTokenRequest(team="payments", name="ci", request_id=uuid.uuid4().hex)
    revoked = await _twice(a, b, replicas.admin_token, "RevokeTeamToken", revoke)
    assert [t.name for t in revoked.revoked] == ["ci"]  # the repeat answers what was revoked


async def test_the_same_request_id_for_another_request_is_invalid_argument(replicas: Replicas) -> None:
    a, b = replicas
    token = await a.create_team("payments")
    request_id = uuid.uuid4().hex
    async with a.client(token) as to_a, b.client(token) as to_b:
        await to_a.coordinator.RegisterContract(
            pb.RegisterContractRequest(source_text=contract("payments/charge"), request_id=request_id)
        )
        with pytest.raises(InvalidArgumentError) as refused:
            await to_b.coordinator.RegisterContract(
                pb.RegisterContractRequest(source_text=contract("payments/refund"), request_id=request_id)
            )
    assert f"request_id {request_id} was already used for another RegisterContract request" in str(
        refused.value
    )
    assert _count(replicas.url, "SELECT count(*) FROM contracts WHERE name = 'payments/refund'") == 0


async def test_the_same_request_sent_to_both_replicas_at_once_is_applied_once(replicas: Replicas) -> None:
    a, b = replicas
    token = await a.create_team("payments")
    for n in range(10):  # rounds: either replica may win each, or find the other's work done
        request = pb.RegisterContractRequest(
            source_text=contract(f"payments/c{n}"), source_name="c.yaml", request_id=uuid.uuid4().hex
        )
        async with a.client(token) as to_a, b.client(token) as to_b:
            first, second = await asyncio.gather(
                to_a.coordinator.RegisterContract(request), to_b.coordinator.RegisterContract(request)
            )
        assert first == second and first.registered
    assert _audited(replicas.url, "contract.register") == 10

    create = pb.CreateTeamRequest(name="crm", request_id=uuid.uuid4().hex)
    async with replicas.client() as to_a, b.client() as to_b:
        answers = await asyncio.gather(
            to_a.coordinator.CreateTeam(create), to_b.coordinator.CreateTeam(create), return_exceptions=True
        )
    made = [r for r in answers if isinstance(r, pb.CreateTeamResponse)]
    assert len(made) == 1 and made[0].token, answers
    assert [type(r) for r in answers if r not in made] == [FailedPreconditionError], answers
    assert _count(replicas.url, "SELECT count(*) FROM tokens WHERE team = 'crm'") == 1


# ---------- through the CLI: an answer lost on the way, the same id to the next replica ----------


class AnswerLosingProxy:
    """Forwards connections to ``upstream``, and the server's HTTP/2 frames back, until the
    server starts an answer (HEADERS or DATA on a stream): then cuts the connection, as a
    network that drops an answer does. The request reached the coordinator and was applied; the
    client sees the connection fail and, given a list, tries the next coordinator."""

    def __init__(self, upstream: str) -> None:
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.cut = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AnswerLosingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def to_server() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            buffer = b""
            while data := await up_reader.read(65536):
                buffer += data
                while len(buffer) >= 9:
                    length = int.from_bytes(buffer[:3], "big")
                    kind, stream = buffer[3], int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                    if len(buffer) < 9 + length:
                        break
                    if stream and kind in (0x0, 0x1):  # an answer begins: lose it
                        self.cut += 1
                        return
                    writer.write(buffer[: 9 + length])
                    buffer = buffer[9 + length :]
                await writer.drain()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.transport.abort()
            up_writer.transport.abort()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # a reset connection ends them


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def _cli(
    coordinator: CoordinatorProcess, addresses: str, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**coordinator.env(token), "ACCORD_COORDINATOR": addresses}
    return await asyncio.to_thread(
        subprocess.run, [ACCORD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_the_cli_sends_the_same_request_id_to_the_next_replica_after_an_answer_is_lost(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas
    url = replicas.url
    dead = _dead_address()
    async with AnswerLosingProxy(a.address) as lossy:
        addresses = f"{dead},{lossy.address},{b.address}"

        created = await _cli(a, addresses, replicas.admin_token, "team", "create", "payments")
        assert lossy.cut == 1  # A made the team; its answer (the token) was lost
        assert created.returncode == 1, created.stdout  # FAILED_PRECONDITION
        assert f"the coordinator at {dead} stopped answering" in created.stderr
        assert f"the coordinator at {lossy.address} stopped answering" in created.stderr
        assert "was already applied by a coordinator whose answer was lost" in created.stderr
        assert "accord team rotate-token payments --grace 0" in created.stderr
        assert created.stdout.strip() == ""  # no token printed: there is none to show
        assert _count(url, "SELECT count(*) FROM tokens WHERE team = 'payments'") == 1
        assert _audited(url, "team.create") == 1

        rotated = await _cli(
            b, b.address, replicas.admin_token, "team", "rotate-token", "payments", "--grace", "0"
        )
        assert rotated.returncode == 0, rotated.stderr
        token = rotated.stdout.strip()

        source = tmp_path / "charge.yaml"
        source.write_text(contract("payments/charge"))
        registered = await _cli(a, addresses, token, "contract", "register", str(source))
        assert lossy.cut == 2
        assert registered.returncode == 0, registered.stderr
        assert _audited(url, "contract.register") == 1
        direct = tmp_path / "refund.yaml"
        direct.write_text(contract("payments/refund"))
        plain = await _cli(b, b.address, token, "contract", "register", str(direct))
        # B answered the repeat with A's answer: what a first registration says.
        assert registered.stdout.replace("charge", "X") == plain.stdout.replace("refund", "X")
