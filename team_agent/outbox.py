"""Results on disk until the coordinator acknowledges them.

A result (complete, fail or release) is written here *before* its first delivery attempt and
removed once the coordinator answers, so a coordinator outage or an agent restart loses nothing.
Each file is written to a temporary name, fsynced, renamed into place, and the directory fsynced:
a crash leaves either the whole file or none of it.

A file holds one result (``put``: the v1 agent protocol) or a batch of them (``put_batch``: an
agent on the v2 stream writes the results that end within a millisecond of each other together,
one file and its fsyncs for the batch rather than for each result). A batch's file is removed once
every result in it has been answered (``remove`` of each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SUFFIX = ".json"
_BATCH_KEY = "batch"


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
        return f"{int(self.created * 1_000_000):020d}-{self.attempt_id}-{self.kind}{_SUFFIX}"


def _document(entry: OutboxEntry) -> dict[str, Any]:
    """``entry``'s fields, as ``asdict`` gives them but without its deep copy (the document is
    only serialised, never changed): the same JSON."""
    return entry.__dict__


def _in_thread(function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``function(*args)`` in the loop's default executor: ``asyncio.to_thread`` without its
    copy of the context (the file work needs none), once per outbox write."""
    return asyncio.get_running_loop().run_in_executor(None, function, *args)


class Outbox:
    """A directory of pending results. Blocking file work runs in a thread."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        # Results kept in a batch's file: request id -> (the file, the request ids in it not yet
        # removed; one set per file, shared by its entries).
        self._in_batch: dict[str, tuple[Path, set[str]]] = {}

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, entry: OutboxEntry) -> Path:
        return self._write_file(entry.file_name, _document(entry))

    def _write_file(self, name: str, document: Any) -> Path:
        self._ensure()
        final = self.directory / name
        temporary = self.directory / f".tmp-{random.getrandbits(128):032x}"
        data = json.dumps(document, separators=(",", ":")).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, final)
        self._fsync_dir()
        return final

    def _remove(self, entry: OutboxEntry) -> None:
        # No directory fsync: a removal lost in a crash only brings back an entry the coordinator
        # already has, and re-delivering it is answered from its stored request id (the result is
        # recorded once; no step runs again).
        with contextlib.suppress(FileNotFoundError):
            (self.directory / entry.file_name).unlink()

    def _pending(self) -> list[OutboxEntry]:
        if not self.directory.is_dir():
            return []
        entries = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                document = json.loads(path.read_bytes())
                if isinstance(document, dict) and _BATCH_KEY in document:
                    batch = [OutboxEntry(**item) for item in document[_BATCH_KEY]]
                    self._hold(path, batch)
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

    def _hold(self, path: Path, entries: list[OutboxEntry]) -> None:
        remaining = {entry.request_id for entry in entries}
        for entry in entries:
            self._in_batch[entry.request_id] = (path, remaining)

    async def put(self, entry: OutboxEntry) -> None:
        await _in_thread(self._write, entry)

    async def put_batch(self, entries: list[OutboxEntry]) -> None:
        """Write ``entries`` durably as one file (one write and its fsyncs for them all)."""
        if len(entries) == 1:
            return await self.put(entries[0])
        first = entries[0]
        name = f"{int(first.created * 1_000_000):020d}-batch-{random.getrandbits(48):012x}{_SUFFIX}"
        document = {_BATCH_KEY: [_document(entry) for entry in entries]}
        path = await _in_thread(self._write_file, name, document)
        self._hold(path, entries)

    async def remove(self, entry: OutboxEntry) -> None:
        # On the event loop: an unlink with no fsync is a few microseconds, less than the hand-off
        # to a thread and back (which showed in the agent's profile, once per result).
        held = self._in_batch.pop(entry.request_id, None)
        if held is None:
            self._remove(entry)
            return
        path, remaining = held
        remaining.discard(entry.request_id)
        if not remaining:  # every result of the batch answered: its file goes (see ``_remove``)
            path.unlink(missing_ok=True)

    async def pending(self) -> list[OutboxEntry]:
        """Every entry on disk, oldest first."""
        return await asyncio.to_thread(self._pending)
