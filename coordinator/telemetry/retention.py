"""Bounded span retention: spans older than ``--span-retention`` (default 7 days) are pruned by a
periodic task (``run_retention``), so the store does not grow without end."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from contracts.durations import parse_duration

logger = logging.getLogger(__name__)

DEFAULT_SPAN_RETENTION = "7d"


class PrunableStore(Protocol):
    def prune_spans(self, before_ns: int) -> Any: ...


async def prune_once(
    store: PrunableStore, retention_s: float, *, now_ns: Callable[[], int] = time.time_ns
) -> int | None:
    """Prune spans that ended more than ``retention_s`` ago; returns what the store reports."""
    before_ns = now_ns() - int(retention_s * 1_000_000_000)
    result = store.prune_spans(before_ns)
    if inspect.isawaitable(result):
        result = await result
    return result if isinstance(result, int) else None


async def run_retention(
    store: PrunableStore,
    retention: float | str = DEFAULT_SPAN_RETENTION,
    interval: float | str = 3600.0,
    *,
    now_ns: Callable[[], int] = time.time_ns,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Prune old spans now and every ``interval`` until cancelled. A failing prune is logged and
    tried again next time; it never stops the loop (or the coordinator)."""
    retention_s = parse_duration(retention, what="span retention")
    interval_s = parse_duration(interval, what="prune interval")
    while True:
        try:
            pruned = await prune_once(store, retention_s, now_ns=now_ns)
            if pruned:
                logger.info("pruned %d spans older than %ss", pruned, retention_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("pruning old spans failed; trying again in %ss", interval_s)
        await sleep(interval_s)
