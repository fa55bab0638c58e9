"""Several REAL coordinator processes on one PostgreSQL database (replicas), for tests.

    replicas = Replicas.start(tmp_path, url, 3)        # three coordinators, each its own home
    replicas.addresses(first=1)                         # "b:port,c:port,a:port": an address list
    async with replicas.client(token, first=2) as c: ...  # an AsyncClient given that list
    replicas[0].kill9(); replicas.restart(0)            # crash one, start it again (same port)
    replicas.terminate(1); replicas.start_again(1)      # SIGTERM (a clean exit), then start again
    replicas.kill_all()

Every member shares the database's one admin token (only the coordinator that created it wrote
it to its home; the others are given it here).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from coordinator.client import AsyncClient
from tests.support.coordinator import CoordinatorProcess


@dataclass
class Replicas:
    url: str
    members: list[CoordinatorProcess]
    admin_token: str

    @classmethod
    def start(
        cls, root: Path, url: str, count: int, *extra_args: str, env: dict[str, str] | None = None
    ) -> Replicas:
        """``count`` coordinators on ``url``, started at once; each serves when this returns."""
        members = [
            CoordinatorProcess.spawn(root / f"replica-{n}", "--store", url, *extra_args, env=env)
            for n in range(count)
        ]
        replicas = cls(url, members, "")
        try:
            for member in members:
                member.wait_started()
        except BaseException:
            replicas.kill_all()
            raise
        tokens = {m.admin_token for m in members if m.admin_token}
        assert len(tokens) == 1, f"one admin token per database, got {len(tokens)}"
        replicas.admin_token = tokens.pop()
        for member in members:
            member.admin_token = replicas.admin_token
        return replicas

    def __getitem__(self, index: int) -> CoordinatorProcess:
        return self.members[index]

    def __iter__(self) -> Iterator[CoordinatorProcess]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def addresses(self, first: int = 0) -> str:
        """Every replica's address, comma-separated, starting with replica ``first``: clients
        given different ``first`` talk to different replicas while all of them answer."""
        ordered = self.members[first % len(self) :] + self.members[: first % len(self)]
        return ",".join(m.address for m in ordered)

    def client(self, token: str | None = None, first: int = 0) -> AsyncClient:
        """An AsyncClient given every replica's address, ``first`` first (default token: admin)."""
        return AsyncClient(self.addresses(first), self.admin_token if token is None else token)

    def alive(self) -> list[int]:
        return [n for n, m in enumerate(self.members) if m.proc is not None and m.proc.poll() is None]

    def restart(self, index: int) -> None:
        """Start replica ``index`` again on its port (kill -9 first if it still runs)."""
        self.members[index].restart()
        self.members[index].admin_token = self.admin_token

    def terminate(self, index: int, within: float = 60.0) -> int:
        """SIGTERM replica ``index`` and wait for it to exit (``within`` only guards against a
        hang): its exit code."""
        proc = self.members[index].proc
        assert proc is not None and proc.poll() is None, f"replica {index} is not running"
        os.killpg(proc.pid, signal.SIGTERM)
        return proc.wait(timeout=within)

    def start_again(self, index: int) -> None:
        """Start a replica that has exited (``terminate``) on the same port, and wait until it serves."""
        member = self.members[index]
        assert member.proc is not None and member.proc.poll() is not None, f"replica {index} still runs"
        member.restart()
        member.admin_token = self.admin_token

    def kill_all(self) -> None:
        for member in self.members:
            member.kill9()

    def logs(self) -> str:
        """Every replica's log of its latest start, for failure messages."""
        return "\n".join(f"--- replica {n} ({m.address}):\n{m.log()[-4000:]}" for n, m in enumerate(self))


def stored_runs(url: str, run_ids: list[str] | None = None, limit: int = 5) -> str:
    """The rows of runs (default: those still pending or running) as PostgreSQL holds them:
    their steps, attempts, timers and offers, for a failure message."""
    lines = []
    with psycopg.connect(url) as conn:
        if run_ids is None:
            run_ids = [
                r for (r,) in conn.execute("SELECT run_id FROM runs WHERE status IN ('pending', 'running')")
            ]
        for run_id in run_ids[:limit]:
            row = conn.execute("SELECT status, version FROM runs WHERE run_id = %s", (run_id,)).fetchone()
            lines.append(f"run {run_id}: {row}")
            for table in ("steps", "attempts"):
                for (data,) in conn.execute(f"SELECT data_json FROM {table} WHERE run_id = %s", (run_id,)):
                    lines.append(f"  {table}: {data[:300]}")
            for row in conn.execute(
                "SELECT kind, key, due_ms, claimed_until_ms FROM timers WHERE run_id = %s", (run_id,)
            ):
                lines.append(f"  timer: {row}")
            for row in conn.execute(
                "SELECT attempt_id, contract, offered_ms FROM offers WHERE run_id = %s", (run_id,)
            ):
                lines.append(f"  offer: {row}")
    return "\n".join(lines)
