"""Accord's benchmarks (``make bench`` = ``python -m benchmarks.run_all``); not part of ``make test``.

The benchmark agents run their steps on the built-in ``python`` engine with ``benchmarks:echo``
below as the callable: an ``async`` function (no thread hop) that returns its input, so what is
measured is Accord (coordinator, agent, gRPC, SQLite), not an engine. This module imports nothing,
so an agent pays nothing for loading it.
"""

from __future__ import annotations

from typing import Any


async def echo(value: Any) -> Any:
    """The no-op step: the output is the input."""
    return value


async def slow(value: Any) -> Any:
    """A step that does not finish while a benchmark looks (bench_scale's waiting runs)."""
    import asyncio

    await asyncio.sleep(3600)
    return value
