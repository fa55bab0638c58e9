"""A team's named tokens through the real CLI against real coordinator processes: create, list
(never a token or its hash), revoke, expiry, rotation with and without a grace period, the admin
token's rotation, and revocation seen by a second coordinator on the same PostgreSQL database.

The rotation with a running agent (which picks up its new token from a secret file) is in
test_agent_token_reload.py.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import UnauthenticatedError
from coordinator.tokens import hash_token
from tests.support.coordinator import ACCORD, CoordinatorProcess
from tests.support.docs import documented_audit_actions
from tests.support.postgres import TestDatabase
from tests.support.wait import wait_until


async def _who(coordinator: CoordinatorProcess, token: str) -> tuple[str, bool]:
    async with coordinator.client(token) as client:
        me = await client.coordinator.WhoAmI(pb.WhoAmIRequest())
    return me.team, me.admin


async def _refusal(coordinator: CoordinatorProcess, token: str) -> str:
    """The refusal's message, or "" while the token is taken."""
    try:
        await _who(coordinator, token)
    except UnauthenticatedError as exc:
        return str(exc)
    return ""


def _secrets_absent(text: str, *tokens: str) -> None:
    for token in tokens:
        assert token not in text
        assert hash_token(token) not in text


async def test_token_create_list_revoke_through_the_cli(coordinator: CoordinatorProcess) -> None:
    created = await coordinator.acli("team", "create", "payments")
    assert created.returncode == 0, created.stderr
    default = created.stdout.strip()
    assert created.stdout == default + "\n"  # only the token, on stdout
    await coordinator.create_team("crm")

    # The team makes a token for itself (no --team); the admin for any team (--team).
    made = await coordinator.acli("team", "token", "create", "ci", "--expires", "90d", token=default)
    assert made.returncode == 0, made.stderr
    ci = made.stdout.strip()
    assert made.stdout == ci + "\n" and ci != default
    assert await _who(coordinator, ci) == ("payments", False)
    by_admin = await coordinator.acli("team", "token", "create", "agent-eu", "--team", "payments")
    assert by_admin.returncode == 0, by_admin.stderr
    agent_eu = by_admin.stdout.strip()
    assert await _who(coordinator, agent_eu) == ("payments", False)

    listed = await coordinator.acli("team", "token", "list", token=ci)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "EXPIRES", "LAST", "USED"]
    assert [line.split()[0] for line in lines[1:]] == ["default", "ci", "agent-eu"]
    expires = lines[0].index("EXPIRES")
    assert lines[1][expires:].startswith("never") and lines[2][expires:].startswith("20")
    _secrets_absent(listed.stdout + listed.stderr, default, ci, agent_eu)

    as_json = await coordinator.acli("team", "token", "list", "--json", token=default)
    assert as_json.returncode == 0, as_json.stderr
    entries = {e["name"]: e for e in json.loads(as_json.stdout)}
    assert set(entries) == {"default", "ci", "agent-eu"}
    assert set(entries["ci"]) == {
        "team",
        "name",
        "status",
        "created_unix_ms",
        "expires_unix_ms",
        "last_used_unix_ms",
        "revoked_unix_ms",
    }
    ci_entry = entries["ci"]
    assert ci_entry["expires_unix_ms"] - ci_entry["created_unix_ms"] == 90 * 86_400_000
    assert entries["default"]["expires_unix_ms"] is None
    _secrets_absent(as_json.stdout, default, ci, agent_eu)

    # Used tokens show their last use (written by the coordinator's next refresh).
    async def ci_last_used() -> int | None:
        result = await coordinator.acli("team", "token", "list", "--json", "--team", "payments")
        return next(e for e in json.loads(result.stdout) if e["name"] == "ci")["last_used_unix_ms"]

    assert await wait_until(ci_last_used, "ci's last use is listed", within=30)

    # The admin lists every team's tokens, with the team.
    everyone = await coordinator.acli("team", "token", "list")
    assert everyone.returncode == 0, everyone.stderr
    assert everyone.stdout.splitlines()[0].split()[:2] == ["TEAM", "NAME"]
    assert {line.split()[0] for line in everyone.stdout.splitlines()[1:]} == {"crm", "payments"}

    revoked = await coordinator.acli("team", "token", "revoke", "ci", token=default)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == ""
    assert "revoked token ci of team payments" in revoked.stderr
    assert "unknown or revoked token" in await _refusal(coordinator, ci)
    assert await _who(coordinator, default) == ("payments", False)  # the others still work
    after = await coordinator.acli("team", "token", "list", token=default)
    assert [line.split()[0] for line in after.stdout.splitlines()[1:]] == ["default", "agent-eu"]
    with_revoked = await coordinator.acli("team", "token", "list", "--all", token=default)
    ci_line = next(line for line in with_revoked.stdout.splitlines() if line.startswith("ci "))
    assert "revoked 20" in ci_line
    # A revoked token's name may be given to a new token.
    again = await coordinator.acli("team", "token", "create", "ci", token=default)
    assert again.returncode == 0, again.stderr
    assert await _who(coordinator, again.stdout.strip()) == ("payments", False)

    # Each change is in the audit log, with the team, the actor and the intervention flag; the
    # team reads its own entries.
    async with coordinator.client(default) as client:
        log = (await client.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries
    seen = [
        (
            e.action,
            e.object,
            e.owner_team,
            e.actor,
            e.platform_intervention,
            json.loads(e.details_json or "{}"),
        )
        for e in log
        if e.action.startswith(("team.", "token."))
    ]
    assert {entry[0] for entry in seen} <= documented_audit_actions()  # docs/production.md
    assert seen == [
        ("team.create", "payments", "payments", "admin", False, {"token": "default"}),
        (
            "token.create",
            "payments/token/ci",
            "payments",
            "payments",
            False,
            {"token": "ci", "expires_ms": ci_entry["expires_unix_ms"]},
        ),
        (
            "token.create",
            "payments/token/agent-eu",
            "payments",
            "admin",
            True,
            {"token": "agent-eu", "expires_ms": 0},
        ),
        ("token.revoke", "payments/token/ci", "payments", "payments", False, {"token": "ci"}),
        (
            "token.create",
            "payments/token/ci",
            "payments",
            "payments",
            False,
            {"token": "ci", "expires_ms": 0},
        ),
    ]
    _secrets_absent(str(log), default, ci, agent_eu)


async def test_token_commands_refuse_clearly(coordinator: CoordinatorProcess) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.create_team("crm")

    other_team = await coordinator.acli("team", "token", "create", "x", "--team", "crm", token=payments)
    assert other_team.returncode == 3
    assert other_team.stderr.strip() == (
        "error: a token of team payments may make tokens of team payments only, not of team crm:"
        " use a token of team crm or the admin's"
    )
    for command in (["list"], ["revoke", "default"]):
        refused = await coordinator.acli("team", "token", *command, "--team", "crm", token=payments)
        assert refused.returncode == 3, refused.stderr
        assert "not of team crm" in refused.stderr

    admin_without_team = await coordinator.acli("team", "token", "create", "x")
    assert admin_without_team.returncode == 2
    assert admin_without_team.stderr.strip() == (
        "error: the admin must name the team to make tokens (--team TEAM)"
    )
    taken = await coordinator.acli("team", "token", "create", "default", token=payments)
    assert taken.returncode == 2
    assert "team payments already has a token named default: revoke it first" in taken.stderr
    bad_name = await coordinator.acli("team", "token", "create", "Not Good", token=payments)
    assert bad_name.returncode == 2 and "is not a token name" in bad_name.stderr
    bad_expiry = await coordinator.acli("team", "token", "create", "x", "--expires", "soon", token=payments)
    assert bad_expiry.returncode == 2 and "--expires: 'soon' is not a duration" in bad_expiry.stderr
    no_team = await coordinator.acli("team", "token", "list", "--team", "nobody")
    assert no_team.returncode == 2 and "team nobody does not exist" in no_team.stderr
    unknown = await coordinator.acli("team", "token", "revoke", "nope", token=payments)
    assert unknown.returncode == 2
    assert "team payments has no token named nope that is not revoked" in unknown.stderr
    for result in (other_team, admin_without_team, taken, bad_name, bad_expiry, no_team, unknown):
        assert "Traceback" not in result.stderr and result.stdout == ""


async def test_an_expired_token_is_refused_saying_so(coordinator: CoordinatorProcess) -> None:
    payments = await coordinator.create_team("payments")
    made = await coordinator.acli("team", "token", "create", "brief", "--expires", "1s", token=payments)
    assert made.returncode == 0, made.stderr
    brief = made.stdout.strip()
    message = await wait_until(lambda: _refusal(coordinator, brief), "the token expires", within=30)
    assert message.startswith("token 'brief' of team payments expired at 20"), message
    assert "accord team token create NAME --team payments" in message
    listed = await coordinator.acli("team", "token", "list", token=payments)
    assert "brief" not in listed.stdout  # no longer live
    everything = await coordinator.acli("team", "token", "list", "--all", token=payments)
    assert any(
        line.startswith("brief ") and line.endswith("expired") for line in everything.stdout.splitlines()
    )


async def test_rotate_token_keeps_the_old_one_for_the_grace_or_stops_it_at_once(
    coordinator: CoordinatorProcess,
) -> None:
    first = await coordinator.create_team("payments")
    rotated = await coordinator.acli("team", "rotate-token", "payments", "--grace", "24h", token=first)
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.strip()
    assert rotated.stdout == second + "\n"
    assert "now named default-old, works until 20" in rotated.stderr
    assert "accord team token revoke default-old --team payments" in rotated.stderr
    assert await _who(coordinator, first) == ("payments", False)  # within its grace
    assert await _who(coordinator, second) == ("payments", False)
    listed = await coordinator.acli("team", "token", "list", "--json", token=second)
    by_name = {e["name"]: e for e in json.loads(listed.stdout)}
    assert set(by_name) == {"default", "default-old"}
    old = by_name["default-old"]
    assert old["expires_unix_ms"] - by_name["default"]["created_unix_ms"] == 24 * 3_600_000

    # --grace 0: the old behaviour, refused at once.
    third = await coordinator.acli("team", "rotate-token", "payments", "--grace", "0")
    assert third.returncode == 0, third.stderr
    assert "the previous token of team payments is refused from now on" in third.stderr
    assert "unknown or revoked token" in await _refusal(coordinator, second)
    assert await _who(coordinator, first) == ("payments", False)  # default-old lives on
    async with coordinator.client() as client:
        log = (await client.coordinator.ListAuditLog(pb.ListAuditLogRequest(team="payments"))).entries
    rotations = [
        (e.actor, e.platform_intervention, json.loads(e.details_json))
        for e in log
        if e.action == "team.rotate_token"
    ]
    assert rotations == [
        ("payments", False, {"token": "default", "grace_s": 86400.0}),
        ("admin", True, {"token": "default", "grace_s": 0.0}),
    ]
    assert "team.rotate_token" in documented_audit_actions()
    # Revoking default-old ends its grace early.
    revoked = await coordinator.acli("team", "token", "revoke", "default-old", "--team", "payments")
    assert revoked.returncode == 0, revoked.stderr
    assert "unknown or revoked token" in await _refusal(coordinator, first)
    assert await _who(coordinator, third.stdout.strip()) == ("payments", False)


async def test_a_grace_period_runs_out(coordinator: CoordinatorProcess) -> None:
    first = await coordinator.create_team("payments")
    rotated = await coordinator.acli("team", "rotate-token", "payments", "--grace", "1s", token=first)
    assert rotated.returncode == 0, rotated.stderr
    message = await wait_until(lambda: _refusal(coordinator, first), "the grace period ends", within=30)
    assert message.startswith("token 'default-old' of team payments expired at "), message
    assert await _who(coordinator, rotated.stdout.strip()) == ("payments", False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_admin_rotate_token_writes_the_file_and_refuses_the_old_token(
    coordinator: CoordinatorProcess,
) -> None:
    file = coordinator.home / "admin.token"
    old = coordinator.admin_token
    assert old and file.read_text().strip() == old
    result = await coordinator.acli("admin", "rotate-token")  # token: the file
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    new = file.read_text().strip()
    assert new and new != old
    assert _mode(file) == 0o600
    assert f"the new one is in {file}" in result.stderr
    _secrets_absent(result.stderr + coordinator.log(), new)
    assert sorted(p.name for p in coordinator.home.iterdir() if "admin.token" in p.name) == ["admin.token"]
    assert "unknown or revoked token" in await _refusal(coordinator, old)
    assert await _who(coordinator, new) == ("", True)
    async with coordinator.client(new) as client:
        log = (await client.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries
    assert [(e.action, e.actor, e.owner_team, e.platform_intervention) for e in log] == [
        ("admin.rotate_token", "admin", "", False)
    ]
    assert "admin.rotate_token" in documented_audit_actions()
    # The CLI reads the new file on its own.
    teams = await coordinator.acli("team", "list")
    assert teams.returncode == 0, teams.stderr

    # A team's token may not rotate the admin's; nothing is written then.
    async with coordinator.client(new) as client:
        team_token = (await client.coordinator.CreateTeam(pb.CreateTeamRequest(name="payments"))).token
    refused = await coordinator.acli("admin", "rotate-token", token=team_token)
    assert refused.returncode == 3
    assert refused.stderr.strip() == "error: only the admin may rotate the admin token"
    assert file.read_text().strip() == new
    assert sorted(p.name for p in coordinator.home.iterdir() if "admin.token" in p.name) == ["admin.token"]


async def test_admin_rotate_token_into_a_home_it_cannot_write_changes_nothing(
    coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**coordinator.env(coordinator.admin_token), "ACCORD_HOME": str(blocker / "home")}
    result = await asyncio.to_thread(
        subprocess.run, [ACCORD, "admin", "rotate-token"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: cannot write the new admin token beside "), result.stderr
    assert "nothing was changed" in result.stderr and "Traceback" not in result.stderr
    assert await _who(coordinator, coordinator.admin_token) == ("", True)


@pytest.mark.postgres
async def test_a_second_coordinator_refuses_a_revoked_token_and_the_old_admin_token(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    url = pg_database.schema_url()
    a = CoordinatorProcess.start(tmp_path / "a", "--store", url)
    b = CoordinatorProcess.start(tmp_path / "b", "--store", url)
    try:
        payments = await a.create_team("payments")
        made = await a.acli("team", "token", "create", "ci", token=payments)
        assert made.returncode == 0, made.stderr
        ci = made.stdout.strip()
        assert await _who(b, ci) == ("payments", False)  # made on a, taken by b

        revoked = await a.acli("team", "token", "revoke", "ci", token=payments)
        assert revoked.returncode == 0, revoked.stderr
        # b reads the tokens again every 0.5 s: the bound only guards against a hang.
        await wait_until(lambda: _refusal(b, ci), "b refuses the revoked token", within=30)
        assert await _who(b, payments) == ("payments", False)

        old_admin = a.admin_token
        rotated = await a.acli("admin", "rotate-token")
        assert rotated.returncode == 0, rotated.stderr
        new_admin = (a.home / "admin.token").read_text().strip()
        await wait_until(lambda: _refusal(b, old_admin), "b refuses the old admin token", within=30)
        assert await _who(b, new_admin) == ("", True)
        # The team made on a with the old admin token lives on; b knows the new admin token.
        listed = await b.acli("team", "token", "list", "--team", "payments", token=new_admin)
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["default"]
    finally:
        a.stop()
        b.stop()
