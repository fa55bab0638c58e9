"""Cron due times for workflow schedules (docs/workflows.md, "Schedules").

The cron library is ``cronsim`` (maintained, pure Python, no dependencies): it parses the five
fields and walks the due times in a time zone from ``zoneinfo``. Daylight-saving transitions are
handled as it defines them, which is what Debian's cron does: a due time inside the hour skipped in
spring runs at the first minute after the jump (02:30 -> 03:00); a fixed due time inside the hour
repeated in autumn runs once, at its first occurrence; an hourly or per-minute expression follows
the wall clock. Every time here is unix milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["ScheduleError", "check_cron", "check_timezone", "due_after", "due_between"]


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


def check_cron(expression: str) -> None:
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"cron '{expression}' has {len(fields)} fields; it needs five: minute hour day-of-month "
            "month day-of-week, such as '0 2 * * *'"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))
    except CronSimError as exc:
        raise ScheduleError(f"cron '{expression}' is not valid: {exc}") from None


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"'{name}' is not a time zone known here; use an IANA name such as Europe/Berlin or UTC"
        ) from None


def _at(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


def due_after(expression: str, timezone: str, after_ms: int) -> int:
    """The first due time strictly after ``after_ms``."""
    zone = check_timezone(timezone)
    return int(next(CronSim(expression, _at(after_ms, zone))).timestamp() * 1000)


def due_between(expression: str, timezone: str, after_ms: int, until_ms: int, limit: int) -> list[int]:
    """The due times in (``after_ms``, ``until_ms``], oldest first: the newest ``limit`` of them
    (walked back from ``until_ms``, so a long gap costs ``limit`` steps, not one per due time)."""
    if limit <= 0 or until_ms <= after_ms:
        return []
    zone = check_timezone(timezone)
    found: list[int] = []
    # cronsim walks back from the minute before; a due time exactly at until_ms counts too.
    for moment in CronSim(expression, _at(until_ms + 1000, zone), reverse=True):
        due = int(moment.timestamp() * 1000)
        if due > until_ms:
            continue
        if due <= after_ms or len(found) >= limit:
            break
        found.append(due)
    return sorted(found)
