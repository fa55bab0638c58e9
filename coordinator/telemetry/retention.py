"""Bounded span retention: spans older than ``--span-retention`` (default 7 days) are pruned by a
periodic task (``run_retention``), so the store does not grow without end."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from contracts.errors import AccordError

logger = logging.getLogger(__name__)

DEFAULT_SPAN_RETENTION = "7d"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class DurationError(AccordError):
    exit_code = 2


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds in a duration such as ``7d``, ``12h``, ``1h30m``, ``90s`` or a bare number of
    seconds. Raises ``DurationError`` naming ``what`` and the accepted forms."""
    raw = text.strip().lower().replace(" ", "")
    if not raw:
        raise DurationError(f"{what}: empty; give a duration such as 7d, 12h or 90s")
    try:
        return float(raw)
    except ValueError:
        pass
    position = 0
    total = 0.0
    for match in _DURATION_RE.finditer(raw):
        if match.start() != position:
            break
        total += float(match[1]) * _UNITS[match[2]]
        position = match.end()
    if position != len(raw) or position == 0:
        raise DurationError(
            f"{what}: {text!r} is not a duration; use a number with a unit (ms, s, m, h, d, w), "
            "e.g. 7d, 12h, 1h30m"
        )
    return total


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
    retention_s = (
        parse_duration(retention, what="span retention") if isinstance(retention, str) else retention
    )
    interval_s = parse_duration(interval, what="prune interval") if isinstance(interval, str) else interval
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
