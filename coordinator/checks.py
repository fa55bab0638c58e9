"""CPU-heavy checks of what a team sends, off the event loop, in worker processes with a time
budget (docs/architecture.md, "Checks off the event loop").

The gRPC services, the agent gateway and the UI share one event loop: a check that takes seconds
there stalls every team. Parsing a contract or workflow file, the compatibility check of a new
version and the composition type-check of a workflow therefore run in a
:class:`~concurrent.futures.ProcessPoolExecutor` when their input is large (a thread could neither
be stopped nor escape the GIL). Small inputs -- the usual contract of a few KiB -- are checked
inline, within an inline budget of CPU time (``INLINE_BUDGET_S``, ``contracts.limits.inline_budget``):
a small input that still takes longer (many ``anyOf`` alternatives compared pairwise) is stopped
there and checked again in a worker, so no check holds the loop for longer than that budget. A
coordinator that never sees a large or costly file never starts a worker (the pool is created on
first use).

A large payload (over 16 KiB) is validated on the loop first too, within a smaller inline budget
(``LARGE_INLINE_BUDGET_S``), when its schema is one whose every step ticks that budget
(``validate_large_inline``): most schemas look at a few fields of a large payload, and a worker
would cost more in pickling than the validation itself. One that runs over goes to a worker, and
that schema's payloads of about that size go straight there afterwards.

A check still running when its budget (``--check-budget``) is spent is answered
FAILED_PRECONDITION naming the budget; its worker is killed and the pool replaced, so the next
check starts on fresh workers.
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

import orjson

from contracts.errors import AccordError, FailedPreconditionError, FileProblemsError, Violation
from contracts.limits import InlineBudgetSpent, inline_budget, subschemas
from contracts.validation import compiled_validator, validate_payload

__all__ = [
    "DEFAULT_BUDGET_S",
    "INLINE_BUDGET_S",
    "INLINE_BYTES",
    "LARGE_INLINE_BUDGET_S",
    "LARGE_INLINE_BYTES",
    "Checks",
    "validate_large_inline",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long one check may run in a worker before it is answered FAILED_PRECONDITION.
DEFAULT_BUDGET_S = 10.0
#: Inputs up to this size (bytes of the files checked together) are checked inline ...
INLINE_BYTES = 16 * 1024
#: ... for at most this much CPU time; past it, the check is made again in a worker.
INLINE_BUDGET_S = 0.05
#: Worker processes (the reference machine has 2 cores; the event loop keeps one).
WORKERS = 2
#: A larger payload, up to this size, is first validated on the loop (``validate_large_inline``) ...
LARGE_INLINE_BYTES = 1024 * 1024
#: ... for at most this much CPU time; past it, it is validated in a worker.
LARGE_INLINE_BUDGET_S = 0.005
#: Keywords one evaluation of which may take time in proportion to the payload without ticking the
#: inline budget: a format checker or a pass over every key in Python, or (the unevaluated ones)
#: every alternative evaluated again. A schema that uses one is never tried on the loop with a
#: large payload.
_UNTICKED = frozenset(
    ("format", "uniqueItems", "patternProperties", "unevaluatedProperties", "unevaluatedItems")
)


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


def payload_size(value: Any) -> int:
    """The size of a JSON value in bytes of compact JSON, near enough to choose where it is checked.

    orjson (~10x the standard library on a large payload) writes UTF-8 where ``json`` writes
    ``\\u`` escapes, and ``null`` for NaN: near enough. What orjson cannot encode (see
    ``contracts.jsontext``) is measured by ``json``."""
    try:
        return len(orjson.dumps(value, default=str))
    except TypeError:
        pass
    try:
        return len(json.dumps(value, separators=(",", ":"), default=str))
    except (TypeError, ValueError, RecursionError):
        return INLINE_BYTES + 1  # odd values are checked in a worker


class _LargeInline:
    """What is known of one compiled validator with large payloads: whether it may be tried on
    the loop at all, and the size from which its payloads go straight to a worker."""

    __slots__ = ("eligible", "spent_from", "validator")

    def __init__(self, validator: Any, eligible: bool) -> None:
        self.validator = validator  # kept: its id is the key
        self.eligible = eligible
        self.spent_from = LARGE_INLINE_BYTES + 1


# By id of the compiled validator (``contracts.validation`` caches those, so one per schema).
_large_inline: dict[int, _LargeInline] = {}
_LARGE_INLINE_KEPT = 2048


def _ticks_throughout(schema: Any) -> bool:
    """True if no subschema of ``schema`` uses a keyword of ``_UNTICKED``."""
    for _, node in subschemas(schema):
        for keyword in _UNTICKED.intersection(node):
            if keyword != "uniqueItems" or node[keyword]:
                return False
    return True


def validate_large_inline(schema: Any, value: Any, name: str, size: int) -> list[Violation] | None:
    """``validate_payload(schema, value, name)`` of a payload over ``INLINE_BYTES`` (``size``
    bytes), made here, on the caller's thread, when that is cheap: None when it must be made in a
    worker instead.

    It is tried when the payload is at most ``LARGE_INLINE_BYTES`` and the schema uses no keyword
    of ``_UNTICKED``, so that every step of the validation ticks the inline budget; it is stopped
    after ``LARGE_INLINE_BUDGET_S`` of CPU time, or sooner when the inline budget it is called
    within (a transition's) runs out first: a transition that starts many steps with large inputs
    holds the loop no longer than its own budget in all. A validation that runs over its own
    budget tells that the schema is costly for payloads of that size: from half of it up, that
    schema's payloads are not tried again (so at most a few attempts are ever wasted per
    schema)."""
    if size > LARGE_INLINE_BYTES:
        return None
    validator = compiled_validator(schema)
    known = _large_inline.get(id(validator))
    if known is None or known.validator is not validator:
        if len(_large_inline) >= _LARGE_INLINE_KEPT:
            _large_inline.clear()
        known = _large_inline[id(validator)] = _LargeInline(validator, _ticks_throughout(schema))
    if not known.eligible or size >= known.spent_from:
        return None
    began = time.thread_time()
    try:
        with inline_budget(LARGE_INLINE_BUDGET_S):
            return validate_payload(schema, value, name)
    except InlineBudgetSpent:
        # Less than half the budget used: the budget around this one (a transition's, which
        # bounds all the checks it makes) ran out, not this schema's.
        if time.thread_time() - began >= LARGE_INLINE_BUDGET_S / 2:
            known.spent_from = min(known.spent_from, size // 2)
            logger.info(
                "validating a payload of %d bytes took over %gms of CPU inline; made again in a worker process",
                size,
                LARGE_INLINE_BUDGET_S * 1000,
            )
        return None


class _Failed(AccordError):
    """An Accord error a worker raised, carried back as its message."""


class Checks:
    """Runs checks inline or in the worker pool (see the module docstring)."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S, *, pooled: bool = True) -> None:
        self.budget_s = budget_s
        self.pooled = pooled  # False: always inline (a Registry used without a coordinator)
        self._pool: ProcessPoolExecutor | None = None
        self.moved = 0  # small checks that ran over the inline budget and went to a worker

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(os.getpid(),),
            )
        return self._pool

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """Kill ``pool``'s workers (one of them overran) and start afresh on the next check."""
        if self._pool is pool:
            self._pool = None
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, what: str, size: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``: inline if ``size`` (bytes of input) is small, else in a worker within
        the budget. ``what`` names the check in the budget's message."""
        if not self.pooled:
            return fn(*args)
        if size <= INLINE_BYTES:
            try:
                with inline_budget(INLINE_BUDGET_S):
                    return fn(*args)
            except InlineBudgetSpent:
                self.moved += 1
                logger.info(
                    "%s took over %gms of CPU inline; made again in a worker process",
                    what,
                    INLINE_BUDGET_S * 1000,
                )
        for _ in range(2):  # once more if the pool broke under another check's overrun
            pool = self._executor()
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
        """``validate_payload(schema, value)``, in a worker when ``value`` is large (jsonschema
        takes seconds over a payload of a few hundred KiB) unless it is quick inline
        (``validate_large_inline``)."""
        size = payload_size(value)
        if size > INLINE_BYTES and self.pooled:
            violations = validate_large_inline(schema, value, name, size)
            if violations is not None:
                return violations
        return await self.run(f"validating {what}", size, validate_payload, schema, value, name)

    def close(self) -> None:
        """Stop the workers (the coordinator's stop)."""
        if self._pool is not None:
            self._replace(self._pool)
