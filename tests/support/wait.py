"""Waiting for the event a test means, with an upper bound, instead of sleeping for a while."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def wait_until(condition: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    """Poll ``condition()`` (plain or async) until it returns something truthy and return that;
    fail naming ``what`` after ``within`` seconds.

    For waiting on the event a test means (a file the engine wrote, an outbox entry, a state the
    coordinator reports) rather than on a state that only approximates it, and never on a sleep
    that "should be enough". ``within`` is only an upper bound: a generous one costs nothing when
    the event comes, and a loaded machine may need it."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {within}s)")
        await asyncio.sleep(0.05)
