"""Retention: what the store keeps, and for how long (docs/production.md, "Retention").

- Runs: a run in a terminal status that finished longer than ``--retention`` ago is deleted with
  its steps, attempts, spans, timers and offers. Events whose triggers ran, and request records
  (written by the time their run finished, so gone no later than it), go by the same age. ``off``
  keeps everything.
- Spans: ``--span-retention`` may keep them shorter, never longer than their run.
- The audit log: ``--audit-retention`` (its own, default 400 days).

Which retention applies when ``--retention`` is not given is a setting of the database
(``RETENTION_SETTING``), written by the schema migration that brought retention: ``30d`` for a new
database, ``off`` for one in use before, which so keeps everything until told otherwise.

Deletion runs in small batches (``batch`` rows, one short transaction each, with a pause between
them), so transitions committing meanwhile never wait long behind it; on SQLite the freed pages are
then given back to the file system (incremental vacuum).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from contracts.durations import parse_duration
from coordinator.store.base import Store

logger = logging.getLogger(__name__)

RETENTION_SETTING = "retention.default"
DEFAULT_RETENTION = "30d"  # of a new database (written by the migration)
DEFAULT_AUDIT_RETENTION = "400d"
DEFAULT_BATCH = 200  # rows (runs: runs with all their rows) per transaction
DEFAULT_INTERVAL_S = 60.0  # between passes
DEFAULT_PAUSE_S = 0.05  # between the batches of one pass
RECLAIM_PAGES = 500  # SQLite pages given back per transaction (2 MB of 4 KB pages)


def parse_retention(text: str, what: str) -> float | None:
    """Seconds in ``text`` (``30d``, ``12h``, ...), or None for ``off``. Raises ValueError naming
    ``what`` for anything else (zero and negative ages included)."""
    value = text.strip().lower()
    if value == "off":
        return None
    try:
        seconds = parse_duration(value, what=what)
    except ValueError as exc:
        raise ValueError(f"{exc}; or off to keep everything") from None
    if seconds <= 0:
        raise ValueError(f"{what} {text!r}: must be longer than 0, or off to keep everything")
    return seconds


def describe(seconds: float | None) -> str:
    if seconds is None:
        return "off"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Retention:
    """How long each kind of row is kept, in seconds (None: for ever)."""

    runs_s: float | None
    spans_s: float | None
    audit_s: float | None

    @staticmethod
    def of(runs_s: float | None, span_s: float | None, audit_s: float | None) -> Retention:
        """Spans are never kept longer than their run."""
        spans = span_s if runs_s is None else runs_s if span_s is None else min(span_s, runs_s)
        return Retention(runs_s, spans, audit_s)


def retention_interval(retention: Retention, interval_s: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between passes: ``interval_s``, or a tenth of the shortest retention if that is
    shorter (a retention of minutes, in a test or a benchmark, is kept to within a tenth)."""
    ages = [s for s in (retention.runs_s, retention.spans_s, retention.audit_s) if s is not None]
    return max(0.1, min([interval_s, *(age / 10 for age in ages)]))


async def resolve(
    store: Store, flag: str | None, span_retention: str, audit_retention: str
) -> tuple[Retention, list[str]]:
    """The retention in force: ``flag`` (``--retention``) when given, else the database's own
    (``RETENTION_SETTING``); and what start-up should say about it."""
    notes: list[str] = []
    if flag is None:
        stored = await store.get_setting(RETENTION_SETTING)
        if stored is None:  # a schema older than retention cannot be open here; be safe
            stored = "off"
        runs_s = parse_retention(stored, f"the database's setting {RETENTION_SETTING}")
        if runs_s is None:
            notes.append(
                "retention is off: this database was in use before retention existed, so it keeps"
                " every run until told otherwise; give --retention (ACCORD_RETENTION), e.g. 30d, to"
                ' delete runs that finished longer ago (docs/production.md, "Retention")'
            )
    else:
        runs_s = parse_retention(flag, "--retention")
    span_s = parse_retention(span_retention, "--span-retention")
    audit_s = parse_retention(audit_retention, "--audit-retention")
    retention = Retention.of(runs_s, span_s, audit_s)
    if span_s is not None and runs_s is not None and span_s > runs_s:
        notes.append(
            f"--span-retention {describe(span_s)} is longer than --retention {describe(runs_s)}:"
            " spans go with their runs, so they are kept as long as runs"
        )
    return retention, notes


@dataclass
class PassResult:
    """What one retention pass deleted."""

    deleted: dict[str, int] = field(default_factory=dict)
    free_pages: int = 0

    def __bool__(self) -> bool:
        return any(self.deleted.values())


async def purge_once(
    store: Store,
    retention: Retention,
    *,
    now_ms: int | None = None,
    batch: int = DEFAULT_BATCH,
    pause_s: float = DEFAULT_PAUSE_S,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> PassResult:
    """Delete everything past its retention at ``now_ms`` (default: now), batch by batch."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    result = PassResult()
    steps: list[tuple[str, Callable[[int, int], Awaitable[int]], float | None, int]] = [
        ("runs", store.purge_runs, retention.runs_s, 1),
        ("events", store.purge_events, retention.runs_s, 1),
        ("requests", store.purge_requests, retention.runs_s, 1),
        ("spans", store.prune_spans, retention.spans_s, 1_000_000),  # ns
        ("audit", store.purge_audit, retention.audit_s, 1),
        # What the autonomy report keeps of deleted runs lives as long as the audit log, and is
        # deleted batch by batch on its own (not only while audit entries fill a batch).
        ("run_days", store.purge_run_days, retention.audit_s, 1),
    ]
    for name, purge, keep_s, scale in steps:
        if keep_s is None:
            continue
        before = (now - int(keep_s * 1000)) * scale
        total = 0
        while True:
            deleted = await purge(before, batch)
            total += deleted
            if deleted < batch:
                break
            await sleep(pause_s)  # let transitions in between
        result.deleted[name] = total
    if result:
        while True:
            free = await store.reclaim_space(RECLAIM_PAGES)
            result.free_pages = max(result.free_pages, free)
            if free <= RECLAIM_PAGES:
                break
            await sleep(pause_s)
    return result


async def run_retention(
    store: Store,
    retention: Retention,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    batch: int = DEFAULT_BATCH,
    pause_s: float = DEFAULT_PAUSE_S,
    on_pass: Callable[[PassResult], None] | None = None,
) -> None:
    """A pass now and every ``interval_s`` until cancelled. A failing pass is logged and tried
    again next time; it never stops the loop (or the coordinator)."""
    if retention.runs_s is None and retention.spans_s is None and retention.audit_s is None:
        return
    while True:
        try:
            result = await purge_once(store, retention, batch=batch, pause_s=pause_s)
            if result:
                logger.info(
                    "retention deleted %s",
                    ", ".join(f"{count} {name}" for name, count in result.deleted.items() if count),
                )
            if on_pass is not None:
                on_pass(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("a retention pass failed; trying again in %ss", interval_s)
        await asyncio.sleep(interval_s)
