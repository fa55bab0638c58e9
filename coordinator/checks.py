"""CPU-heavy checks of what a team sends, off the event loop, in worker processes with a time
budget (docs/architecture.md, "Checks off the event loop").

The gRPC services, the agent gateway and the UI share one event loop: a check that takes seconds
there stalls every team. The checks of a registration -- reading a contract, workflow or policy
file, the compatibility check of a new version, the composition type-check of a workflow, the
consumer and policy checks, also for ``--dry-run`` and ``contract diff`` -- therefore always run
in a :class:`~concurrent.futures.ProcessPoolExecutor` (:meth:`Checks.check`; a thread could
neither be stopped nor escape the GIL), whatever their size: a 130-byte schema with a recursive
``$ref`` or a 250-byte pattern pair can cost minutes. Registrations are rare, and a check costs a
worker round trip of about a millisecond; the pool is created on first use and reused.

Payload validations (run inputs, signals, events, task outputs) are on hot paths: a small payload
is validated inline with a number of keyword evaluations (:data:`INLINE_STEPS`, about 0.1 s at
worst); one that needs more, or a large payload, is validated in a worker (:meth:`Checks.validate`,
:func:`inline_violations`).

A check still running when its budget (``--check-budget``) is spent is answered
FAILED_PRECONDITION naming the budget; its worker is killed and the pool replaced, so the next
check starts on fresh workers. Starting workers is not counted in a check's budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from contracts.errors import AccordError, FailedPreconditionError, FileProblemsError, Violation
from contracts.validation import TooCostly, validate_payload

__all__ = ["DEFAULT_BUDGET_S", "INLINE_BYTES", "INLINE_STEPS", "Checks", "inline_violations"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long one check may run in a worker before it is answered FAILED_PRECONDITION.
DEFAULT_BUDGET_S = 10.0
#: Inputs up to this size (bytes of the files checked together) are checked inline.
INLINE_BYTES = 16 * 1024
#: Keyword evaluations a payload validated inline may make (a 16 KiB input of objects makes about
#: 12,000, in 40 ms); one that needs more is validated in a worker.
INLINE_STEPS = 25_000
#: Worker processes (the reference machine has 2 cores; the event loop keeps one).
WORKERS = 2
#: How long starting the workers may take (spawning Python and importing the checkers).
START_S = 120.0


def _call(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """Run ``fn`` in a worker; Accord's errors come back as data (an exception's pickling does not
    keep what ours carry, such as a file's list of problems)."""
    try:
        return "ok", fn(*args)
    except FileProblemsError as exc:
        return "problems", exc.problems
    except AccordError as exc:
        return "error", str(exc)


def _worker_start(coordinator_pid: int) -> None:
    """In each worker: import what checks use once, not in the first check's budget, and exit
    when the coordinator is gone (killed with -9, it cannot stop its workers itself)."""
    import contracts.compat
    import contracts.composition
    import contracts.loader  # noqa: F401

    def watch() -> None:
        while os.getppid() == coordinator_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="coordinator-watch", daemon=True).start()


def _started() -> bool:
    """A worker's first job: it answers once its initializer has run."""
    return True


def inline_violations(schema: Any, value: Any, name: str = "input") -> list[Violation] | None:
    """The violations of a small ``value``, validated inline within :data:`INLINE_STEPS`; None
    when it is large or needs more steps: validate it in a worker (:meth:`Checks.validate`)."""
    if payload_size(value) > INLINE_BYTES:
        return None
    try:
        return validate_payload(schema, value, name, max_steps=INLINE_STEPS)
    except TooCostly:
        return None


def payload_size(value: Any) -> int:
    """The size of a JSON value in bytes of compact JSON, near enough to choose where it is checked."""
    try:
        return len(json.dumps(value, separators=(",", ":"), default=str))
    except (TypeError, ValueError, RecursionError):
        return INLINE_BYTES + 1  # odd values are checked in a worker


class _Failed(AccordError):
    """An Accord error a worker raised, carried back as its message."""


class Checks:
    """Runs checks inline or in the worker pool (see the module docstring)."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S, *, pooled: bool = True) -> None:
        self.budget_s = budget_s
        self.pooled = pooled  # False: always inline (a Registry used without a coordinator)
        self._pool: ProcessPoolExecutor | None = None
        self._ready: asyncio.Future[Any] | None = None  # the current pool's workers started

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def _started_pool(self) -> ProcessPoolExecutor:
        """The pool, its workers started: spawning them is not spent from a check's budget."""
        pool = self._executor()
        ready = self._ready
        if ready is None:
            loop = asyncio.get_running_loop()
            # One job per worker, sent together: each finds no idle worker and starts one.
            starts = [loop.run_in_executor(pool, _started) for _ in range(WORKERS)]
            ready = self._ready = asyncio.gather(*starts)
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_S)
        except (TimeoutError, BrokenProcessPool):
            if self._ready is ready:
                self._replace(pool)
            raise FailedPreconditionError(
                f"the worker processes that check files did not start within {START_S:g}s; try again"
            ) from None
        return pool

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """Kill ``pool``'s workers (one of them overran) and start afresh on the next check."""
        if self._pool is pool:
            self._pool = None
            self._ready = None
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def check(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker within the budget, whatever its size (a registration's
        checks: see the module docstring). ``what`` names the check in the budget's message."""
        return await self.run(what, -1, fn, *args)

    async def run(self, what: str, size: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``: inline if ``size`` (bytes of input) is small, else (or with ``size``
        -1) in a worker within the budget. ``what`` names the check in the budget's message."""
        if not self.pooled or 0 <= size <= INLINE_BYTES:
            return fn(*args)
        for _ in range(2):  # once more if the pool broke under another check's overrun
            pool = await self._started_pool()
            future = asyncio.get_running_loop().run_in_executor(pool, _call, fn, *args)
            try:
                kind, value = await asyncio.wait_for(future, self.budget_s)
            except TimeoutError:
                self._replace(pool)
                logger.warning(
                    "%s ran over the check budget of %ss; its worker was replaced", what, self.budget_s
                )
                raise FailedPreconditionError(
                    f"{what} took longer than the check budget of {self.budget_s:g}s (--check-budget) "
                    "and was stopped; make the file smaller or its schemas simpler"
                ) from None
            except BrokenProcessPool:
                self._replace(pool)
                continue
            if kind == "problems":
                raise FileProblemsError(value)
            if kind == "error":
                raise _Failed(value)
            result: T = value
            return result
        raise FailedPreconditionError(f"{what} could not be checked: its worker process stopped; try again")

    async def validate(self, what: str, schema: Any, value: Any, name: str = "input") -> list[Violation]:
        """``validate_payload(schema, value)``: inline when ``value`` is small and its validation
        cheap (:func:`inline_violations`), else in a worker (jsonschema takes seconds over a
        payload of a few hundred KiB, or over a small one under a schema that branches)."""
        if not self.pooled:
            return validate_payload(schema, value, name)
        violations = inline_violations(schema, value, name)
        if violations is not None:
            return violations
        return await self.run(f"validating {what}", -1, validate_payload, schema, value, name)

    def close(self) -> None:
        """Stop the workers (the coordinator's stop)."""
        if self._pool is not None:
            self._replace(self._pool)
