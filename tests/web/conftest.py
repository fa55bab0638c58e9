"""Fixtures of the web UI tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Make ``tests.web...`` importable however pytest was started (as tests/engines/conftest does).
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import tempfile  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402

from coordinator.store.sqlite import SqliteStore  # noqa: E402
from tests.web.world import World, build_world, stop_world  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = _REPO / "test-artifacts" / "ui"


@pytest.fixture
async def ui_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real, opened SQLite store for the UI's sessions (the coordinator's store in production)."""
    store = SqliteStore(tmp_path / "coordinator.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One real coordinator with the UI, three teams, their agents and a failed three-team run."""
    built = await build_world(tmp_path_factory.mktemp("accord") / "home")
    try:
        yield built
    finally:
        await stop_world(built)


@pytest_asyncio.fixture(loop_scope="package")
async def browser_page(world: World) -> AsyncIterator[object]:
    """A page in a real headless Chromium with a fresh profile (Debian's chromium, never a
    downloaded one: run .ci/install-browser.sh first)."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once per test, before any I/O matters
        if os.environ.get("CI"):  # CI must run the browser tests, never skip them
            pytest.fail("no /usr/bin/chromium in CI: .ci/install-browser.sh should have installed it")
        pytest.skip("no /usr/bin/chromium: run .ci/install-browser.sh")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="accord-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1500, "height": 950},
            )
            page = context.pages[0] if context.pages else await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text)
                    if msg.type == "error" and "Failed to load resource" not in msg.text
                    else None
                ),
            )
            try:
                yield page
            finally:
                await context.close()
            assert not errors, f"errors in the page: {errors}"
