"""ACCORD_HOME holds the database (payloads in clear), its WAL, coordinator.json and the admin
token: the coordinator makes it 0700 and every file in it 0600, fresh or found looser."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import ACCORD, CoordinatorProcess, coordinator_env
from tests.support.scenario import contract, start_run, wait_run
from tests.support.wait import wait_until

FLOW = """
workflow: crm/flow
input: {type: object}
steps:
  notify:
    contract: crm/notify@^1
    input: {order_id: "o-1"}
output:
  ref: "${steps.notify.output.ref}"
"""


def modes(home: Path) -> dict[str, int]:
    """Every entry under ``home`` (itself as "."), by relative path, with its permission bits."""
    found = {".": stat.S_IMODE(home.stat().st_mode)}
    for path in home.rglob("*"):
        found[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(home: Path) -> None:
    found = modes(home)
    assert {"coordinator.db", "coordinator.db-wal", "coordinator.db-shm", "coordinator.json"} <= set(found)
    assert {"coordinator.db.lock", "admin.token"} <= set(found)
    loose = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (home / name).is_dir() else 0o600)
    }
    assert not loose, loose


async def _notify(call: Call) -> dict[str, str]:
    return {"ref": "r-1"}


async def _write_a_run(coordinator: CoordinatorProcess) -> None:
    """Enough work that the WAL really holds rows (a run with its step and attempt)."""
    token = await coordinator.create_team("crm")
    await coordinator.register_contract(token, contract("crm/notify"))
    await coordinator.register_workflow(token, FLOW)
    agent = TestAgent(coordinator.address, token, "crm", {"crm/notify@1": _notify})
    await agent.start()
    try:
        async with coordinator.client(token) as client:
            started = await start_run(client, "crm/flow", {})
            run = await wait_run(client, started.run.run_id)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    finally:
        await agent.stop()


def _spawn_in_a_new_home(home: Path, log: Path) -> CoordinatorProcess:
    """Not through CoordinatorProcess.start: it creates the home (and its log file in it) itself."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [ACCORD, "coordinator", "start", "--listen", "127.0.0.1:0", "--ui", "off"],
            env=coordinator_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return CoordinatorProcess(home=home, proc=proc, log_path=log)


async def test_a_fresh_home_is_private(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    coordinator = _spawn_in_a_new_home(home, tmp_path / "coordinator.log")
    try:
        coordinator.wait_started()
        await _write_a_run(coordinator)
        await wait_until(lambda: (home / "coordinator.db-wal").exists(), "no WAL file was written")
        assert_private(home)
        assert "readable by other users" not in coordinator.log()
    finally:
        coordinator.stop()


async def test_a_loose_existing_home_is_tightened_at_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    coordinator = CoordinatorProcess.start(home)
    try:
        await _write_a_run(coordinator)
        coordinator.kill9()  # the WAL and shm stay, as after a crash
        # What an older coordinator (or a careless copy) left: everything readable by all.
        os.chmod(home, 0o755)
        for path in home.iterdir():
            os.chmod(path, 0o644)
        (home / "notes").mkdir(mode=0o755)
        (home / "notes" / "old.txt").write_text("x")
        os.chmod(home / "notes" / "old.txt", 0o666)
        assert "coordinator.db-wal" in modes(home)

        coordinator.restart()
        assert_private(home)
        tightened = [line for line in coordinator.log().splitlines() if "readable by other users" in line]
        assert len(tightened) == 1, coordinator.log()
        assert str(home) in tightened[0] and "made owner-only" in tightened[0]
    finally:
        coordinator.stop()
