"""``accord team limits TEAM --start-rate`` against the real coordinator: over its start rate a
team's StartRun is refused RESOURCE_EXHAUSTED with a ``retry-after-ms`` hint (as the edge's
admission control answers), another team and the admin are not held by it; ``team show`` and
``team limits`` show it; only the admin sets it. (``--max-concurrency``: test_team_concurrency.py.)"""

from __future__ import annotations

import json

import grpc

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc

WORKFLOW = """
workflow: {team}/flow
input: {{type: object}}
steps:
  hold:
    wait_for: {{approval: {{}}}}
output: {{}}
"""


async def test_a_start_rate_refuses_with_a_retry_hint_and_holds_only_its_team(coordinator):
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    for team, token in tokens.items():
        await coordinator.register_workflow(token, WORKFLOW.format(team=team))

    bad = await coordinator.acli("team", "limits", "payments", "--start-rate", "fast")
    assert bad.returncode == 2 and "50/s, 600/m or 10/h" in bad.stderr, bad
    own = await coordinator.acli(
        "team", "limits", "payments", "--start-rate", "1/s", token=tokens["payments"]
    )
    assert own.returncode == 3 and "only the admin" in own.stderr, own
    concurrency = await coordinator.acli("team", "limits", "payments", "--max-concurrency", "-1")
    assert concurrency.returncode == 2 and "between 0 (none) and 1000000" in concurrency.stderr, concurrency
    ok = await coordinator.acli("team", "limits", "payments", "--start-rate", "1/h")
    assert ok.returncode == 0 and "team payments limits: start rate 1/h" in ok.stdout, ok

    shown = await coordinator.acli("team", "show", "payments", token=tokens["payments"])
    assert "limits   start rate 1/h" in shown.stdout, shown
    as_json = json.loads((await coordinator.acli("team", "limits", "payments", "--json")).stdout)
    assert as_json == {"max_concurrency": 0, "start_rate_per_s": 1 / 3600}
    other = await coordinator.acli("team", "limits", "payments", token=tokens["shipping"])
    assert other.returncode == 3, other

    async with grpc.aio.insecure_channel(coordinator.address) as channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)

        async def start(team: str, key: str) -> grpc.StatusCode:
            token = coordinator.admin_token if team == "admin" else tokens[team]
            request = pb.StartRunRequest(
                workflow=f"{'payments' if team == 'admin' else team}/flow", idempotency_key=key
            )
            try:
                await stub.StartRun(request, metadata=(("authorization", f"Bearer {token}"),), timeout=60)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                assert "team payments may start 1/h runs" in (exc.details() or "")
                hints = [int(v) for k, v in exc.trailing_metadata() or () if k == "retry-after-ms"]
                assert hints and 3_000_000 < hints[0] <= 3_600_001, exc.trailing_metadata()
                return exc.code()
            return grpc.StatusCode.OK

        assert await start("payments", "p-1") == grpc.StatusCode.OK
        assert await start("payments", "p-2") == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Another team, and the admin, are not held by payments' rate.
        for n in range(3):
            assert await start("shipping", f"s-{n}") == grpc.StatusCode.OK
        assert await start("admin", "a-1") == grpc.StatusCode.OK

        both = await coordinator.acli("team", "limits", "payments", "--max-concurrency", "5")
        assert "limits: start rate 1/h, max concurrency 5" in both.stdout, both
        await coordinator.acli("team", "limits", "payments", "--max-concurrency", "0")
        removed = await coordinator.acli("team", "limits", "payments", "--start-rate", "off")
        assert removed.returncode == 0 and "limits: none" in removed.stdout, removed
        assert await start("payments", "p-3") == grpc.StatusCode.OK

    async with coordinator.client() as admin:
        entries = (await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest(team="payments"))).entries
    limits = [e for e in entries if e.action == "team.limits"]
    assert len(limits) == 4 and all(e.platform_intervention for e in limits)
