"""The timer processor: claims due timers from the store and has the engine fire each.

Timers are rows (``TimerRecord``) armed in the same commit as the transition that needs them, so
a crash loses none: whichever process runs next claims them when due (``Store.claim_timers``; a
claim hides a timer from other claimers until it runs out, so a processor that dies mid-fire
delays a timer by the claim, never loses it). The processor sleeps until the earliest due timer,
woken early by ``hint`` when this process arms an earlier one, and looks again at least every
``poll_s`` (timers armed by another process). See docs/architecture.md, "Durable timers".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from contracts.errors import UnreachableError
from coordinator.store.base import Store
from coordinator.store.records import TimerRecord

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class TimerProcessor:
    def __init__(
        self,
        store: Store,
        fire: Callable[[TimerRecord], Awaitable[None]],
        *,
        poll_s: float = 1.0,
        batch: int = 64,
        claim_ms: int = 30_000,
    ) -> None:
        self._store = store
        self._fire = fire
        self._poll_s = poll_s
        self._batch = batch
        self._claim_ms = claim_ms
        self._wake = asyncio.Event()
        self._sleeping_until: int | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="engine-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def hint(self, due_ms: int) -> None:
        """A timer due at ``due_ms`` was just armed: wake up if that is before the next look."""
        if self._sleeping_until is None or due_ms < self._sleeping_until:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                # Claiming is a write: look (a read) first, claim only what is due.
                next_due = await self._store.next_timer_due()
                if next_due is not None and next_due <= now_ms():
                    claimed = await self._store.claim_timers(now_ms(), self._batch, self._claim_ms)
                    if claimed:
                        await asyncio.gather(*(self._fire_one(t) for t in claimed))
                        if len(claimed) == self._batch:
                            continue  # more may be due
                    next_due = await self._store.next_timer_due()
            except asyncio.CancelledError:
                raise
            except UnreachableError as exc:  # the store logs the outage once; look again later
                logger.debug("the timer processor cannot reach the store: %s", exc)
                next_due = None
            except Exception:
                logger.exception("the timer processor failed; trying again in %.1fs", self._poll_s)
                next_due = None
            now = now_ms()
            until = now + int(self._poll_s * 1000)
            if next_due is not None and next_due < until:
                # A due timer that is claimed (by a fire that failed, or by another process) is
                # looked at again soon, not in a busy loop.
                until = max(next_due, now + 50)
            self._sleeping_until = until
            try:
                await asyncio.wait_for(self._wake.wait(), (until - now) / 1000)
            except TimeoutError:
                pass
            self._wake.clear()
            self._sleeping_until = None

    async def _fire_one(self, timer: TimerRecord) -> None:
        try:
            await self._fire(timer)
        except asyncio.CancelledError:
            raise
        except UnreachableError as exc:  # the store logs the outage once
            logger.debug("timer %s %s fires again once its claim runs out: %s", timer.kind, timer.key, exc)
        except Exception:
            logger.exception(
                "timer %s %s failed; it fires again once its claim runs out", timer.kind, timer.key
            )
