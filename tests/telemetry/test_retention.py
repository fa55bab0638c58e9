"""Bounded span retention: durations, and the periodic prune against the real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.errors import DurationError
from coordinator.store.sqlite import SqliteStore
from coordinator.telemetry.retention import run_retention

from .spans_fixture import T0, S, three_team_trace


@pytest.mark.parametrize("text", ["", "7 days", "d7", "1x", "1h-2m"])
async def test_a_bad_retention_says_what_is_accepted(text: str) -> None:
    with pytest.raises(DurationError, match=r"^span retention: .*expected e\.g\. 30s"):
        await run_retention(SqliteStore(Path("unused.db")), text)


async def test_run_retention_prunes_old_spans_periodically(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "accord.db")
    await store.open()
    try:
        spans = three_team_trace()  # ends between T0+0.4s and T0+4s
        await store.insert_spans(spans)
        sleeps: list[float] = []
        now = [T0 + 3 * S + 3600 * S]

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += 10 * S  # the next round sees everything as old
            if len(sleeps) == 2:
                raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await run_retention(store, "1h", "5m", now_ns=lambda: now[0], sleep=fake_sleep)
        assert sleeps == [300.0, 300.0]
        assert await store.spans_for_trace(spans[0].trace_id) == []
    finally:
        await store.close()


async def test_a_failing_prune_does_not_stop_the_loop() -> None:
    calls = 0

    class Broken:
        async def prune_spans(self, before_ns: int) -> int:
            nonlocal calls
            calls += 1
            raise RuntimeError("disk full")

    async def sleep(seconds: float) -> None:
        if calls >= 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_retention(Broken(), 60.0, 1.0, sleep=sleep)
    assert calls == 3
