"""The outbox keeps results on disk, in order, until they are removed: an append-only log per
process (see team_agent/outbox.py), read back after a crash, and the previous format's files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import team_agent.outbox as outbox_module
from team_agent.outbox import Outbox, OutboxEntry, entries_on_disk


def _entry(n: int, **fields: Any) -> OutboxEntry:
    values: dict[str, Any] = {"output_json": "{}", **fields}
    return OutboxEntry(
        kind="complete", agent_id="a", attempt_id=f"at-{n}", request_id=f"r{n}", created=float(n), **values
    )


def _files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def _logs(directory: Path) -> list[Path]:
    return _files(directory, "*.log")


def _crash(outbox: Outbox) -> None:
    """What kill -9 leaves: the files as they are, the locks released, nothing more written."""
    outbox._done = []
    outbox.close()


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir())


# -- the log ----------------------------------------------------------------------------------


async def test_entries_survive_a_restart_and_leave_when_removed(tmp_path: Path) -> None:
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
    directory = tmp_path / "outbox"
    outbox = Outbox(directory)
    await outbox.put(second)
    await outbox.put(first)
    _crash(outbox)
    reopened = Outbox(directory)
    assert await reopened.pending() == [first, second]  # oldest first
    await reopened.remove(first)
    await asyncio.sleep(0)
    _crash(reopened)
    again = Outbox(directory)
    assert await again.pending() == [second]
    await again.remove(second)
    assert not _logs(directory)  # every result answered: the taken-over segment is gone
    assert not _files(directory, ".tmp-*")


async def test_a_batch_is_one_write_and_one_sync_in_one_executor_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    syncs: list[int] = []
    real_in_thread, real_sync = outbox_module._in_thread, outbox_module._sync

    def in_thread(function: Any, *args: Any) -> Any:
        calls.append(function.__name__)
        return real_in_thread(function, *args)

    def sync(fd: int) -> None:
        syncs.append(fd)
        real_sync(fd)

    monkeypatch.setattr(outbox_module, "_in_thread", in_thread)
    monkeypatch.setattr(outbox_module, "_sync", sync)
    outbox = Outbox(tmp_path)
    batch = [_entry(1), _entry(2), _entry(3)]
    await outbox.put_batch(batch)
    assert calls == ["_append"] and len(syncs) == 1
    # Removal: on the loop, no executor call and no sync (a done record written as is).
    calls.clear()
    syncs.clear()
    await outbox.remove(batch[0])
    await outbox.remove(batch[2])
    await asyncio.sleep(0)  # their done record is written
    assert calls == [] and syncs == []
    # Durable before put_batch returned: a process that dies now (no more writes) leaves them.
    _crash(outbox)
    assert await Outbox(tmp_path).pending() == [batch[1]]


async def test_a_write_is_synced_before_put_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """put_batch resolves only after the fdatasync of its data has returned."""
    order: list[str] = []
    real_sync = outbox_module._sync

    def sync(fd: int) -> None:
        real_sync(fd)
        order.append("synced")

    monkeypatch.setattr(outbox_module, "_sync", sync)
    outbox = Outbox(tmp_path)
    await outbox.put_batch([_entry(1), _entry(2)])
    order.append("returned")
    await outbox.put(_entry(3))
    order.append("returned")
    assert order == ["synced", "returned", "synced", "returned"]


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from team_agent.outbox import Outbox, OutboxEntry, entries_on_disk

    async def main(directory):
        outbox = Outbox(directory, owner="writer", segment_bytes=20_000)
        n = 0
        while True:
            batch = [
                OutboxEntry(kind="complete", agent_id="a", attempt_id=f"at-{n + i}", request_id=f"r{n + i}",
                            output_json='{"pad":"' + "x" * (n % 300) + '"}', created=float(n + i))
                for i in range(1 + n % 3)
            ]
            await outbox.put_batch(batch)
            for entry in batch:
                print("written", entry.request_id, flush=True)
            for entry in batch[::2]:  # some answered, some not
                print("removing", entry.request_id, flush=True)  # (before: the kill may come within)
                await outbox.remove(entry)
            n += len(batch)

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.9])
def test_kill_9_mid_append_loses_no_written_result_and_leaves_nothing_garbled(
    tmp_path: Path, delay: float
) -> None:
    directory = tmp_path / "outbox"
    process = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.stdout is not None
    lines: list[str] = []
    while len(lines) < 20:  # started writing
        lines.append(process.stdout.readline())
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    rest, _ = process.communicate()
    lines += rest.split("\n")[:-1]  # whole lines only: the kill may cut the last one short
    written = {line.split()[1] for line in lines if line.startswith("written")}
    removed = {line.split()[1] for line in lines if line.startswith("removing")}
    replayed = asyncio.run(Outbox(directory).pending())
    ids = [entry.request_id for entry in replayed]
    assert len(ids) == len(set(ids))
    # Every result whose write completed and that was not answered is back, whole.
    assert written - removed <= set(ids)
    for entry in replayed:
        n = int(entry.request_id[1:])
        assert entry.attempt_id == f"at-{n}" and entry.created == float(n)
        assert json.loads(entry.output_json)["pad"].strip("x") == ""


async def test_a_torn_last_record_is_ignored_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path)
    await outbox.put(_entry(1))
    await outbox.put(_entry(2))
    _crash(outbox)
    [log] = _logs(tmp_path)
    whole = log.read_bytes()
    second_start = len(whole) // 2  # two records of the same size
    assert (
        outbox_module._HEADER.unpack_from(whole, second_start)[0] == second_start - outbox_module._HEADER.size
    )
    cuts = [second_start + 1, second_start + 8, second_start + 20, len(whole) - 1]
    for cut in cuts:
        log.write_bytes(whole[:cut])
        caplog.clear()
        reopened = Outbox(tmp_path)
        with caplog.at_level(logging.WARNING, logger="team_agent.outbox"):
            assert await reopened.pending() == [_entry(1)]
        assert f"{log.name}: incomplete last record at offset {second_start}" in caplog.text
        assert not _files(tmp_path, "*.broken")
        _crash(reopened)
        for path in _logs(tmp_path):
            path.unlink()
    # A last record whole in length but garbled (its sectors half written): never taken for one.
    garbled = bytearray(whole)
    at = whole.rindex(b'"created":2.0')
    garbled[at + len('"created":')] = ord("7")  # still JSON, still an entry: only the checksum tells
    log.write_bytes(bytes(garbled))
    assert await Outbox(tmp_path).pending() == [_entry(1)]
    # Zeros past the end (a file system that extended the file but wrote no data).
    for path in _logs(tmp_path):
        path.unlink()
    log.write_bytes(whole + bytes(64))
    assert await Outbox(tmp_path).pending() == [_entry(1), _entry(2)]


async def test_a_broken_record_before_the_end_is_logged_and_the_file_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path)
    for n in (1, 2, 3):
        await outbox.put(_entry(n))
    _crash(outbox)
    [log] = _logs(tmp_path)
    data = bytearray(log.read_bytes())
    record = len(data) // 3
    data[record + 12] ^= 0xFF  # inside the second record
    log.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="team_agent.outbox"):
        reopened = Outbox(tmp_path)
        assert await reopened.pending() == [_entry(1)]
    assert f"{log.name}: broken record at offset {record}" in caplog.text
    assert log.with_suffix(".broken").exists()  # kept for whoever looks into it
    assert await Outbox(tmp_path).pending() == [_entry(1)]  # read once, not again


async def test_a_removal_lost_in_a_crash_brings_the_result_back(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    await outbox.put_batch([_entry(1), _entry(2)])
    await outbox.remove(_entry(1))
    await asyncio.sleep(0)  # its done record written, with no sync
    _crash(outbox)
    assert await Outbox(tmp_path).pending() == [_entry(2)]
    # A done record not written yet (an append under way) is lost with the process: re-delivered.
    outbox = Outbox(tmp_path / "b")
    await outbox.put_batch([_entry(1), _entry(2)])
    assert outbox._active is not None
    with outbox._active.lock:
        await outbox.remove(_entry(1))
        await asyncio.sleep(0)
    assert outbox._done == ["r1"]
    _crash(outbox)
    assert await Outbox(tmp_path / "b").pending() == [_entry(1), _entry(2)]


async def test_a_done_record_rides_the_next_append(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    await outbox.put(_entry(1))
    assert outbox._active is not None
    with outbox._active.lock:  # an append under way
        await outbox.remove(_entry(1))
        await asyncio.sleep(0)
    assert outbox._done == ["r1"]
    await outbox.put(_entry(2))
    assert outbox._done == []
    _crash(outbox)
    assert await Outbox(tmp_path).pending() == [_entry(2)]


async def test_disk_use_stays_flat_while_results_go_through(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, segment_bytes=16_384)
    held: list[OutboxEntry] = []
    sizes = []
    for n in range(3000):
        entry = _entry(n, output_json=json.dumps({"n": n, "pad": "x" * 100}))
        await outbox.put_batch([entry])
        held.append(entry)
        if len(held) > 20:  # answered a little later, out of order
            await outbox.remove(held.pop(n % 7))
        if n % 100 == 0:
            sizes.append(_size(tmp_path))
    assert max(sizes) < 3 * 16_384 + 20 * 400, sizes
    assert len(_logs(tmp_path)) <= 3
    for entry in held:
        await outbox.remove(entry)
    assert len(_logs(tmp_path)) == 1  # the segment in use; its results all answered
    await asyncio.sleep(0)
    _crash(outbox)
    restarted = Outbox(tmp_path)
    assert await restarted.pending() == []
    assert not _logs(tmp_path)  # a segment with nothing left to deliver goes at start-up


async def test_a_rotated_segment_goes_once_its_last_result_is_answered(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, segment_entries=2)
    for n in (1, 2, 3):
        await outbox.put(_entry(n))
    first, second = _logs(tmp_path)
    await outbox.remove(_entry(1))
    assert first.exists()
    await outbox.remove(_entry(2))
    assert not first.exists() and second.exists()


async def test_a_failed_write_is_reported_and_nothing_is_appended_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(tmp_path)
    await outbox.put(_entry(1))
    real_sync = outbox_module._sync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(outbox_module, "_sync", failing)
    with pytest.raises(OSError):
        await outbox.put(_entry(2))
    monkeypatch.setattr(outbox_module, "_sync", real_sync)
    await outbox.put(_entry(3))
    assert len(_logs(tmp_path)) == 2  # a new segment after the failed one
    _crash(outbox)
    replayed = await Outbox(tmp_path).pending()
    assert _entry(1) in replayed and _entry(3) in replayed


async def test_entries_on_disk_reads_without_changing_anything(tmp_path: Path) -> None:
    assert entries_on_disk(tmp_path / "none") == []
    _legacy_file(tmp_path, _entry(1))
    outbox = Outbox(tmp_path)
    await outbox.put_batch([_entry(2), _entry(3)])
    await outbox.remove(_entry(2))
    await asyncio.sleep(0)
    assert entries_on_disk(tmp_path) == [_entry(1), _entry(3)]
    _crash(outbox)  # a dead process's segment: read, not taken over
    before = {path.name: path.read_bytes() for path in _files(tmp_path, "*")}
    assert entries_on_disk(tmp_path) == [_entry(1), _entry(3)]
    assert {path.name: path.read_bytes() for path in _files(tmp_path, "*")} == before
    assert await Outbox(tmp_path).pending() == [_entry(1), _entry(3)]


# -- replicas sharing one directory -----------------------------------------------------------


async def test_a_live_replicas_results_are_delivered_but_left_to_it(tmp_path: Path) -> None:
    """As with one file per result: a replica starting in a shared directory sends what it finds
    (a result sent twice is answered once, by request id); the log of a replica still running is
    its own (never taken over or deleted), that of one gone is taken over once."""
    live = Outbox(tmp_path, owner="r1")
    await live.put_batch([_entry(1), _entry(2)])
    starting = Outbox(tmp_path, owner="r2")
    assert await starting.pending() == [_entry(1), _entry(2)]
    await starting.remove(_entry(1))
    [log] = _logs(tmp_path)
    assert "r1" in log.name
    await live.put(_entry(3))  # still appending to its own segment
    await live.remove(_entry(1))
    await asyncio.sleep(0)
    # r1 dies with r2, r3 unanswered: the next to start takes them over, once.
    _crash(live)
    third, fourth = Outbox(tmp_path, owner="r3"), Outbox(tmp_path, owner="r4")
    assert await third.pending() == [_entry(2), _entry(3)]
    assert not log.exists()
    assert await fourth.pending() == [_entry(2), _entry(3)]  # r3's now: sent, left to r3
    await fourth.remove(_entry(2))
    await third.remove(_entry(2))
    await third.remove(_entry(3))
    assert not _logs(tmp_path)


async def test_a_segment_being_written_by_a_live_replica_is_read_up_to_its_last_whole_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = Outbox(tmp_path)
    await live.put(_entry(1))
    assert live._active is not None and live._active.fd is not None
    os.write(live._active.fd, outbox_module._record(b"P", {"kind": "complete"})[:9])  # mid-append
    with caplog.at_level(logging.WARNING, logger="team_agent.outbox"):
        assert await Outbox(tmp_path).pending() == [_entry(1)]
    assert caplog.text == ""  # an append under way is not an error
    assert len(_logs(tmp_path)) == 1


# -- the previous format -----------------------------------------------------------------------


def _legacy_file(directory: Path, entry: OutboxEntry) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / entry.file_name
    path.write_text(json.dumps(entry.__dict__))
    return path


def _legacy_batch(directory: Path, entries: list[OutboxEntry]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{int(entries[0].created * 1_000_000):020d}-batch-0123456789ab.json"
    path.write_text(json.dumps({"batch": [entry.__dict__ for entry in entries]}))
    return path


async def test_a_previous_versions_files_are_delivered_and_removed_once_answered(tmp_path: Path) -> None:
    single = _legacy_file(tmp_path, _entry(1))
    batch = _legacy_batch(tmp_path, [_entry(2), _entry(3), _entry(4)])
    (tmp_path / ".tmp-0123").write_text('{"half')  # a write cut short: never renamed, ignored
    outbox = Outbox(tmp_path)
    await outbox.put(_entry(5))
    _crash(outbox)
    outbox = Outbox(tmp_path)
    assert await outbox.pending() == [_entry(n) for n in (1, 2, 3, 4, 5)]
    await outbox.remove(_entry(1))
    assert not single.exists()
    await outbox.remove(_entry(2))
    await outbox.remove(_entry(4))
    assert batch.exists()  # r3 is not answered yet
    assert await Outbox(tmp_path).pending() == [_entry(n) for n in (2, 3, 4, 5)]
    await outbox.remove(_entry(3))
    assert not batch.exists()
    await outbox.remove(_entry(5))
    assert not _files(tmp_path, "*.json") and not _logs(tmp_path)


async def test_a_broken_entry_of_the_previous_format_is_set_aside(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    (tmp_path / "0001-x-complete.json").write_text("{not json")
    assert await outbox.pending() == []
    assert (tmp_path / "0001-x-complete.broken").exists()
