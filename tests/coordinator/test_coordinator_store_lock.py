"""One coordinator process per SQLite file, with real ``accord coordinator start`` processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.coordinator import ACCORD, CoordinatorProcess


async def test_a_second_coordinator_on_the_same_database_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    first = CoordinatorProcess.start(tmp_path / "home")
    try:
        assert first.proc is not None
        await first.create_team("payments")
        # The same home, as a second start by mistake would be: it must leave the first's
        # coordinator.json, admin token and database alone.
        second = await asyncio.create_subprocess_exec(
            *(
                ACCORD,
                "coordinator",
                "start",
                "--db",
                str(first.db),
                "--listen",
                "127.0.0.1:0",
                "--ui",
                "off",
            ),
            env=first.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 2, stderr
        assert stdout == b""
        assert stderr.decode() == (
            f"error: the database {first.db} is in use by another coordinator process (pid {first.proc.pid},"
            f" lock file {first.db}.lock): SQLite serves one coordinator process; stop the other, use"
            " another --db, or use PostgreSQL for several coordinators\n"
        )

        # The first still serves, and still owns its home.
        assert json.loads((first.home / "coordinator.json").read_text())["pid"] == first.proc.pid
        await first.create_team("crm")

        # kill -9 leaves no stale lock: a new coordinator starts on the same file and has its data.
        first.restart()
        async with first.client() as client:
            teams = await client.coordinator.ListTeams(pb.ListTeamsRequest())
        assert {t.name for t in teams.teams} >= {"payments", "crm"}
    finally:
        first.kill9()
