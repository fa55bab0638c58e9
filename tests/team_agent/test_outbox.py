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


def _entry(n: int) -> OutboxEntry:
    return OutboxEntry(
        kind="complete",
        agent_id="a",
        attempt_id=f"at-{n}",
        request_id=f"r{n}",
        output_json="{}",
        created=float(n),
    )


async def test_a_batch_is_one_file_removed_once_every_result_in_it_is(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    outbox = Outbox(directory)
    batch = [_entry(1), _entry(2), _entry(3)]
    await outbox.put_batch(batch)
    assert len(list(directory.glob("*.json"))) == 1
    # Read back after a restart (a kill -9): every entry of the batch, in order.
    reopened = Outbox(directory)
    assert await reopened.pending() == batch
    await reopened.remove(batch[0])
    await reopened.remove(batch[2])
    assert len(list(directory.glob("*.json"))) == 1  # r2 is not answered yet
    assert await Outbox(directory).pending() == batch  # a crash now re-delivers all three (by request id)
    await reopened.remove(batch[1])
    assert not list(directory.glob("*.json"))
    assert not list(directory.glob(".tmp-*"))


def _names(directory: Path) -> list[str]:
    return [p.name for p in directory.glob("*.json")]


async def test_a_batch_of_one_is_a_plain_entry(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    await outbox.put_batch([_entry(1)])
    assert _names(tmp_path) == [_entry(1).file_name]
    await outbox.remove(_entry(1))
    assert _names(tmp_path) == []
