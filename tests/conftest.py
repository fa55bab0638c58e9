"""Shared fixtures.

``coordinator``: the REAL coordinator as a subprocess (``accord coordinator start --listen
127.0.0.1:0``) with a fresh ACCORD_HOME; yields a ``tests.support.coordinator.CoordinatorProcess``:

    coordinator.address / .admin_token / .home / .db
    coordinator.client(token=None)            -> AsyncClient (async with ...; None = admin)
    await coordinator.create_team("payments") -> the team's token
    await coordinator.register_contract(token, yaml_text, dry_run=False)
    await coordinator.register_workflow(token, yaml_text, dry_run=False)
    coordinator.cli("runs", "list", token=...) -> CompletedProcess (the accord CLI against it)
    await coordinator.acli(...)                  # same, off the event loop (in-process agents keep serving)
    coordinator.kill9(); coordinator.restart()  # crash and restart on the same DB and port

``pg_database``: a new database on the local PostgreSQL for the test module (marked
``postgres``), dropped after it; ``.url``, ``.schema_url()`` (a fresh schema in it, per test).

``test_agent``: a factory for ``tests.support.agent.TestAgent`` (stopped at teardown):

    agent = await test_agent(token, "payments", {"payments/charge-card@1": handler})
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

# Coordinators and agents these tests start serve no metrics unless a test asks for them: the
# default port (127.0.0.1:9464) would be taken by whichever of the parallel tests came first.
os.environ.setdefault("ACCORD_METRICS", "off")

from tests.support.agent import Handler, TestAgent  # noqa: E402
from tests.support.coordinator import CoordinatorProcess  # noqa: E402
from tests.support.postgres import TestDatabase  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N`` (pytest-xdist, ``--dist loadgroup``): tests that share one expensive
    session fixture run on one worker, so it is started once: the real Airflow (three processes)
    and the real Chromium. Everything else is spread test by test."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if item.get_closest_marker("airflow") is not None:
            item.add_marker(pytest.mark.xdist_group("airflow"))
        elif item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))


class _GroupingCheck:
    """Fails the grouped tests when ``--dist loadgroup`` silently stops grouping. pytest-xdist
    tells its scheduler a test's group by appending ``@group`` to the test's node id; from pytest
    9.2 on that no longer takes (pytest-xdist#1386), and the tests of one group are spread over
    the workers, each starting its own Airflow. Runs after xdist's own hook (trylast); the
    failure is a test's, since an error raised during a worker's collection is swallowed."""

    def __init__(self) -> None:
        self.ungrouped: set[str] = set()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
            self.ungrouped = {
                i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
            }

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.nodeid in self.ungrouped:
            pytest.fail(
                "--dist loadgroup does not group with this pytest/pytest-xdist pair (the node id "
                "has no @group: pytest-xdist#1386); pin a pair that does (pyproject.toml)",
                pytrace=False,
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_GroupingCheck(), "accord-grouping-check")


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[CoordinatorProcess]:
    proc = CoordinatorProcess.start(tmp_path / "accord-home")
    try:
        yield proc
    finally:
        proc.kill9()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[TestDatabase]:
    database = TestDatabase.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture
async def test_agent(
    coordinator: CoordinatorProcess,
) -> AsyncIterator[Callable[..., Awaitable[TestAgent]]]:
    agents: list[TestAgent] = []

    async def make(token: str, team: str, handlers: dict[str, Handler], **options: Any) -> TestAgent:
        agent = TestAgent(coordinator.address, token, team, handlers, **options)
        await agent.start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.stop()
