"""Results on disk until the coordinator acknowledges them.

A result (complete, fail or release) is written here *before* its first delivery attempt and
removed once the coordinator answers, so a coordinator outage or an agent restart loses nothing.

Results are appended to a log: ``put`` and ``put_batch`` append one record per result in one write
and one fdatasync (the write's future resolves only once it is done), to a segment file this
process alone writes (``log-OWNER-PID-RANDOM-SEQ.log``, flock-ed for as long as the process keeps
it). A record is ``<length:u32><crc32:u32>`` then ``length`` bytes: ``P`` + an entry's JSON, or
``D`` + a JSON list of request ids answered. A crash mid-append leaves at most a torn last record,
which the checksum tells from a whole one: it is ignored on replay.

``remove`` (the coordinator answered) appends a ``D`` record with no sync of its own (written at
once when no append is under way, else with the next one): a removal lost in a crash only brings
the result back, and re-delivering it is answered from its stored request id. A segment whose
results are all answered is deleted; past ``segment_bytes`` (or ``segment_entries``) the process
starts a new one, so a long-running agent's outbox stays small.

``pending`` (at start-up) reads every segment in the directory. A segment whose owner still runs
(its lock is held: a replica sharing the state directory) is read, its unanswered results
returned for delivery, and left to its owner. Any other (its process is gone) is adopted: its
unanswered results are written to a segment of this process, made durable, and the old segment is
deleted; a segment with a broken record that is not its last is kept aside as ``*.broken``.
Files of the previous format (one ``*.json`` per result or per batch) are still read and removed
once answered, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SUFFIX = ".json"  # the previous format: one file per result or per batch
_BATCH_KEY = "batch"
_LOG_SUFFIX = ".log"
_HEADER = struct.Struct("<II")  # payload length, crc32 of the length's bytes and the payload
_PUT = b"P"
_DONE = b"D"
SEGMENT_BYTES = 4 * 1024 * 1024
SEGMENT_ENTRIES = 16384
_sync = getattr(os, "fdatasync", os.fsync)


@dataclass(frozen=True)
class OutboxEntry:
    kind: str  # "complete" | "fail" | "release"
    agent_id: str  # the agent that held the lease (may be a previous process)
    attempt_id: str
    request_id: str
    run_id: str = ""
    step_id: str = ""
    output_json: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] = field(default_factory=dict)  # type, message, retryable, details
    reason: str = ""
    created: float = field(default_factory=time.time)

    @property
    def file_name(self) -> str:
        """The entry's file in the previous format (one file per result)."""
        return f"{int(self.created * 1_000_000):020d}-{self.attempt_id}-{self.kind}{_SUFFIX}"


def _document(entry: OutboxEntry) -> dict[str, Any]:
    """``entry``'s fields, as ``asdict`` gives them but without its deep copy (the document is
    only serialised, never changed): the same JSON."""
    return entry.__dict__


def _record(kind: bytes, body: Any) -> bytes:
    payload = kind + json.dumps(body, separators=(",", ":")).encode()
    length = len(payload).to_bytes(4, "little")
    return _HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def _in_thread(function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``function(*args)`` in the loop's default executor: ``asyncio.to_thread`` without its
    copy of the context (the file work needs none), once per outbox write."""
    return asyncio.get_running_loop().run_in_executor(None, function, *args)


class _Segment:
    """One log file of this process. ``pending``, ``size`` and ``entries`` are kept on the event
    loop; the file itself is written under ``lock`` (in the executor, or on the loop for a done
    record when the lock is free)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.lock = threading.Lock()
        self.pending: set[str] = set()  # request ids written here and not yet removed
        self.size = 0
        self.entries = 0
        self.full = False  # takes no more results (rotated, or holding adopted ones): done records only
        self.broken = False  # a write failed: never written to again (a partial record may end it)


@dataclass
class _Scan:
    """What one segment file holds."""

    path: Path
    puts: list[OutboxEntry] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    damaged: bool = False  # a broken record that is not a torn tail


def _scan(path: Path, data: bytes, *, live: bool) -> _Scan:
    """The records of ``data`` (the file at ``path``) up to the first that is not whole."""
    scan = _Scan(path)
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            end, whole = len(data), False
        else:
            length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            payload = data[offset + _HEADER.size : end]
            whole = (
                length > 0
                and end <= len(data)
                and zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little"))) == crc
            )
        if not whole:
            if end >= len(data) or not any(data[end:]):
                # A torn last record: the process died mid-append (or, for a live owner, the
                # append is under way). Its write never completed, so no result is lost.
                if not live:
                    logger.warning(
                        "outbox log %s: incomplete last record at offset %d ignored (an append cut short)",
                        path.name,
                        offset,
                    )
            else:
                logger.error(
                    "outbox log %s: broken record at offset %d (%d bytes after it are unreadable)",
                    path.name,
                    offset,
                    len(data) - offset,
                )
                scan.damaged = True
            break
        try:
            body = json.loads(payload[1:])
            if payload[:1] == _PUT:
                scan.puts.append(OutboxEntry(**body))
            elif payload[:1] == _DONE:
                scan.done.update(str(request_id) for request_id in body)
            else:
                raise ValueError(f"unknown record type {payload[:1]!r}")
        except (ValueError, TypeError) as exc:
            logger.error("outbox log %s: unreadable record at offset %d skipped: %s", path.name, offset, exc)
            scan.damaged = True
        offset = end
    return scan


def entries_on_disk(directory: str | Path) -> list[OutboxEntry]:
    """The results in the outbox at ``directory`` not yet answered, oldest first, read without
    changing anything (no lock taken, nothing adopted, moved or deleted): for a look from outside
    (tests, an operator), not for delivery. A record being appended is not counted yet."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    entries: list[OutboxEntry] = []
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            document = json.loads(path.read_bytes())
            if isinstance(document, dict) and _BATCH_KEY in document:
                entries += [OutboxEntry(**item) for item in document[_BATCH_KEY]]
            else:
                entries.append(OutboxEntry(**document))
    puts: dict[str, OutboxEntry] = {}
    done: set[str] = set()
    for path in sorted(directory.glob(f"*{_LOG_SUFFIX}")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        scan = _scan(path, data, live=True)
        puts.update((entry.request_id, entry) for entry in scan.puts)
        done |= scan.done
    entries += [entry for request_id, entry in puts.items() if request_id not in done]
    entries.sort(key=lambda entry: entry.created)
    return entries


class Outbox:
    """A directory of pending results. Blocking file work runs in a thread."""

    def __init__(
        self,
        directory: str | Path,
        *,
        owner: str = "agent",
        segment_bytes: int = SEGMENT_BYTES,
        segment_entries: int = SEGMENT_ENTRIES,
    ) -> None:
        self.directory = Path(directory)
        self._prefix = (
            f"log-{re.sub(r'[^A-Za-z0-9_.]', '_', owner)[:64]}-{os.getpid()}-{random.getrandbits(40):010x}"
        )
        self._sequence = 0
        self._segment_bytes = segment_bytes
        self._segment_entries = segment_entries
        self._active: _Segment | None = None
        self._where: dict[str, _Segment] = {}  # request id -> the segment of ours holding it
        self._done: list[str] = []  # removed, their done record not written yet
        self._done_fallback: _Segment | None = None
        self._done_soon = False  # a write of the done record is scheduled (call_soon)
        self._foreign: set[str] = set()  # read from a live replica's segment: left to it
        # Results kept in a batch's file of the previous format: request id -> (the file, the
        # request ids in it not yet removed; one set per file, shared by its entries).
        self._in_batch: dict[str, tuple[Path, set[str]]] = {}

    # -- files ----------------------------------------------------------------------------------

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _new_segment(self) -> _Segment:
        self._sequence += 1
        return _Segment(self.directory / f"{self._prefix}-{self._sequence:06d}{_LOG_SUFFIX}")

    def _open(self, segment: _Segment) -> None:
        """Create ``segment``'s file, locked before it has its name (so no replica starting now
        can take it for a dead process's), its name made durable."""
        self._ensure()
        temporary = self.directory / f".tmp-{random.getrandbits(128):032x}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"cannot lock an outbox log in {self.directory} ({exc.strerror}): the outbox"
                    " needs a file system with flock, which tells a running replica's log from a"
                    " dead one's",
                ) from exc
            os.rename(temporary, segment.path)
            self._fsync_dir()
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        segment.fd = fd

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def _append(self, segment: _Segment, data: bytes) -> None:
        """Append ``data`` to ``segment`` and make it durable (in the executor)."""
        with segment.lock:
            if segment.broken:
                raise OSError(f"outbox log {segment.path.name} takes no more writes after a failed one")
            try:
                if segment.fd is None:
                    self._open(segment)
                assert segment.fd is not None
                self._write_all(segment.fd, data)
                _sync(segment.fd)
            except BaseException:
                segment.broken = True  # a partial record may end it: nothing goes after it
                raise

    def _retire(self, segment: _Segment) -> None:
        """Delete ``segment`` (every result in it answered). Unlinked before it is closed, so no
        replica can lock it in between and take it for a dead process's."""
        if segment is self._active:
            self._active = None
        with segment.lock:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
            segment.broken = True

    def _write_done(self, fallback: _Segment | None = None) -> None:
        """Append the done record of the removed results now if no append is under way (no sync:
        see ``remove``), to the active segment or else to ``fallback`` (one of ours); else it
        goes with the next append."""
        segment = self._active
        if segment is None or segment.fd is None or segment.broken:
            segment = fallback
        if not self._done or segment is None or segment.fd is None or segment.broken:
            return
        if not segment.lock.acquire(blocking=False):
            return
        try:
            data = _record(_DONE, self._done)
            self._done = []
            self._write_all(segment.fd, data)
            segment.size += len(data)
        except OSError as exc:
            segment.broken = True
            logger.warning("outbox log %s: could not write a done record: %s", segment.path.name, exc)
        finally:
            segment.lock.release()

    def _write_done_soon(self) -> None:
        self._done_soon = False
        fallback, self._done_fallback = self._done_fallback, None
        self._write_done(fallback)

    # -- writing --------------------------------------------------------------------------------

    async def put(self, entry: OutboxEntry) -> None:
        await self.put_batch([entry])

    async def put_batch(self, entries: list[OutboxEntry]) -> None:
        """Append ``entries`` durably: one write and one fdatasync for them all (in one executor
        call), done before this returns."""
        segment = self._active
        if (
            segment is None
            or segment.full
            or segment.broken
            or segment.size >= self._segment_bytes
            or segment.entries >= self._segment_entries
        ):
            if segment is not None and not segment.pending and segment.fd is not None:
                self._retire(segment)
            elif segment is not None:
                segment.full = True
            segment = self._active = self._new_segment()
        parts = [_record(_DONE, self._done)] if self._done else []
        self._done = []
        parts += [_record(_PUT, _document(entry)) for entry in entries]
        data = b"".join(parts)
        for entry in entries:
            segment.pending.add(entry.request_id)
            self._where[entry.request_id] = segment
        segment.size += len(data)
        segment.entries += len(entries)
        try:
            await _in_thread(self._append, segment, data)
        except Exception:
            # Not durable: the caller is told. Forget them (the agent removes no entry whose
            # write failed), so the segment can still go once the rest of it is answered.
            for entry in entries:
                segment.pending.discard(entry.request_id)
                self._where.pop(entry.request_id, None)
            if segment is self._active:
                self._active = None
            if not segment.pending:
                self._retire(segment)
            raise
        self._write_done()

    async def remove(self, entry: OutboxEntry) -> None:
        """The coordinator answered ``entry``: forget it. On the event loop: a short append with
        no sync (or an unlink) costs less than the hand-off to a thread and back. A removal lost
        in a crash only brings back an entry the coordinator already has, and re-delivering it is
        answered from its stored request id (the result is recorded once; no step runs again)."""
        request_id = entry.request_id
        segment = self._where.pop(request_id, None)
        if segment is not None:
            segment.pending.discard(request_id)
            if not segment.pending and segment is not self._active:
                self._retire(segment)  # nothing of it is needed any more: no done record either
            else:
                # One done record for the removals of this turn of the loop (the deliveries the
                # coordinator answers together), written once they are all in.
                self._done.append(request_id)
                self._done_fallback = segment
                if not self._done_soon:
                    self._done_soon = True
                    asyncio.get_running_loop().call_soon(self._write_done_soon)
            return
        if request_id in self._foreign:
            self._foreign.discard(request_id)  # its owner, still running, removes it
            return
        held = self._in_batch.pop(request_id, None)
        if held is None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / entry.file_name).unlink()
            return
        path, remaining = held
        remaining.discard(request_id)
        if not remaining:  # every result of the batch answered: its file goes
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Write what is left to write and let go of this process's segments (as its exit
        does). Results not answered stay on disk for the next start."""
        self._write_done()
        for segment in {*self._where.values(), *([self._active] if self._active else [])}:
            with segment.lock:
                if segment.fd is not None:
                    os.close(segment.fd)
                    segment.fd = None
                segment.broken = True
        self._active = None
        self._where.clear()
        self._done = []

    # -- replay ---------------------------------------------------------------------------------

    async def pending(self) -> list[OutboxEntry]:
        """Every entry on disk not yet answered, oldest first. Segments of dead processes (this
        agent's before a restart, or a replica's) are taken over: their results are rewritten
        into a segment of this process before the old file goes."""
        entries, adopted = await asyncio.to_thread(self._pending)
        if adopted is not None:
            for request_id in adopted.pending:
                self._where[request_id] = adopted
            if not adopted.pending:
                self._retire(adopted)
        return entries

    def _pending(self) -> tuple[list[OutboxEntry], _Segment | None]:
        # In a thread, before this outbox writes anything (the agent calls it first, at start).
        if not self.directory.is_dir():
            return [], None
        entries = self._pending_files()
        own = {segment.path for segment in self._where.values()}
        if self._active is not None:
            own.add(self._active.path)
        scans: list[tuple[_Scan, int | None]] = []  # a dead process's segment: with its locked fd
        done: set[str] = set()
        try:
            for path in sorted(self.directory.glob(f"*{_LOG_SUFFIX}")):
                scan, fd = self._read_segment(path, live=path in own)
                if scan is None:
                    continue
                scans.append((scan, fd))
                done |= scan.done
            # Results of live segments (a replica's, or ours) are theirs to remove; the others
            # are adopted. A result in both (a takeover whose deletion a crash undid) counts once.
            seen: set[str] = set()
            adopt: list[OutboxEntry] = []
            for scan, fd in sorted(scans, key=lambda item: item[1] is not None):
                for entry in scan.puts:
                    if entry.request_id in done or entry.request_id in seen:
                        continue
                    seen.add(entry.request_id)
                    entries.append(entry)
                    if fd is None:
                        if scan.path not in own:
                            self._foreign.add(entry.request_id)
                    else:
                        adopt.append(entry)
            adopted = None
            if adopt:
                adopted = self._new_segment()
                adopted.full = True  # holds the adopted results only
                adopted.pending = {entry.request_id for entry in adopt}
                data = b"".join(_record(_PUT, _document(entry)) for entry in adopt)
                self._open(adopted)
                assert adopted.fd is not None
                self._write_all(adopted.fd, data)
                _sync(adopted.fd)
            # Their results are durable in ours now: the dead segments go (a deletion lost in a
            # crash only brings back results answered by request id).
            for scan, fd in scans:
                if fd is None:
                    continue
                if scan.damaged:
                    broken = scan.path.with_suffix(".broken")
                    logger.error(
                        "outbox log %s is damaged: its readable results are taken over, the file is moved to %s",
                        scan.path.name,
                        broken.name,
                    )
                    with contextlib.suppress(OSError):
                        scan.path.rename(broken)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        scan.path.unlink()
        finally:
            for _, fd in scans:
                if fd is not None:
                    os.close(fd)
        entries.sort(key=lambda entry: entry.created)
        return entries, adopted

    def _read_segment(self, path: Path, *, live: bool) -> tuple[_Scan | None, int | None]:
        """The segment at ``path`` read, with its fd (locked) when its process is gone; (None,
        None) when it is gone meanwhile."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, None
        keep = False
        try:
            if not live:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live = True  # a running process's (a replica sharing the directory)
                else:
                    try:
                        if os.stat(path).st_ino != os.fstat(fd).st_ino:
                            return None, None  # taken over and deleted by a replica meanwhile
                    except FileNotFoundError:
                        return None, None
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
            keep = not live
            return _scan(path, data, live=live), (fd if keep else None)
        finally:
            if not keep:
                os.close(fd)

    def _pending_files(self) -> list[OutboxEntry]:
        """Entries in files of the previous format (one per result or per batch)."""
        entries = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                document = json.loads(path.read_bytes())
                if isinstance(document, dict) and _BATCH_KEY in document:
                    batch = [OutboxEntry(**item) for item in document[_BATCH_KEY]]
                    remaining = {entry.request_id for entry in batch}
                    for entry in batch:
                        self._in_batch[entry.request_id] = (path, remaining)
                    entries.extend(batch)
                else:
                    entries.append(OutboxEntry(**document))
            except FileNotFoundError:
                continue  # delivered meanwhile by another replica sharing the directory
            except (ValueError, TypeError) as exc:
                broken = path.with_suffix(".broken")
                logger.error("outbox entry %s is unreadable (%s); moved to %s", path.name, exc, broken.name)
                with contextlib.suppress(OSError):
                    path.rename(broken)
        return entries
