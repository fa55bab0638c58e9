"""Results on disk until the coordinator acknowledges them.

A result (complete, fail or release) is written here *before* its first delivery attempt and
removed once the coordinator answers, so a coordinator outage or an agent restart loses nothing.
One JSON file per result, written to a temporary name, fsynced, renamed into place, and the
directory fsynced: a crash leaves either the whole entry or none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SUFFIX = ".json"


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


class Outbox:
    """A directory of pending results. Blocking file work runs in a thread."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, entry: OutboxEntry) -> Path:
        self._ensure()
        final = self.directory / entry.file_name
        temporary = self.directory / f".tmp-{uuid.uuid4().hex}"
        data = json.dumps(asdict(entry), separators=(",", ":")).encode()
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
                entries.append(OutboxEntry(**json.loads(path.read_bytes())))
            except FileNotFoundError:
                continue  # delivered meanwhile by another replica sharing the directory
            except (ValueError, TypeError) as exc:
                broken = path.with_suffix(".broken")
                logger.error("outbox entry %s is unreadable (%s); moved to %s", path.name, exc, broken.name)
                with contextlib.suppress(OSError):
                    path.rename(broken)
        return entries

    async def put(self, entry: OutboxEntry) -> None:
        await asyncio.to_thread(self._write, entry)

    async def remove(self, entry: OutboxEntry) -> None:
        await asyncio.to_thread(self._remove, entry)

    async def pending(self) -> list[OutboxEntry]:
        """Every entry on disk, oldest first."""
        return await asyncio.to_thread(self._pending)
