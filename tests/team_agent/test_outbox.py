"""The outbox keeps results on disk, in order, until they are removed."""

from __future__ import annotations

from pathlib import Path

from team_agent.outbox import Outbox, OutboxEntry


async def test_entries_survive_a_new_outbox_and_leave_when_removed(tmp_path: Path) -> None:
    first = OutboxEntry(
        kind="complete", agent_id="a", attempt_id="at-1", request_id="r1", output_json='{"x":1}', created=1.0
    )
    second = OutboxEntry(
        kind="fail",
        agent_id="a",
        attempt_id="at-2",
        request_id="r2",
        failure={"type": "X", "message": "m", "retryable": True, "details": {}},
        created=2.0,
    )
    outbox = Outbox(tmp_path / "outbox")
    await outbox.put(second)
    await outbox.put(first)
    reopened = Outbox(tmp_path / "outbox")
    assert await reopened.pending() == [first, second]
    await reopened.remove(first)
    assert await Outbox(tmp_path / "outbox").pending() == [second]
    assert not list((tmp_path / "outbox").glob(".tmp-*"))


async def test_a_broken_entry_is_set_aside(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    (tmp_path / "0001-x-complete.json").write_text("{not json")
    assert await outbox.pending() == []
    assert (tmp_path / "0001-x-complete.broken").exists()
