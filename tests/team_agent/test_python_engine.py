"""The python engine: sync or async callables, the context when asked for, exception names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from team_agent.engines.base import EngineConfigError, EngineFailure, TaskContext
from team_agent.engines.python import PythonEngine
from tests.team_agent.agent_testkit import context


class CardDeclined(Exception):
    pass


def sync_double(value: dict[str, Any]) -> dict[str, Any]:
    return {"doubled": value["n"] * 2}


async def async_with_context(value: dict[str, Any], task: TaskContext) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"run": task.run_id, "key": task.idempotency_key, "n": value["n"]}


def declines(value: Any) -> Any:
    raise CardDeclined("card 4242 declined")


def gives_up(value: Any) -> Any:
    raise EngineFailure("stock service says no", type="OutOfStock", retryable=False)


async def sleeps(value: Any) -> Any:
    await asyncio.sleep(60)


async def call(target: str, value: Any) -> Any:
    engine = PythonEngine({"callable": f"{__name__}:{target}"})
    try:
        return await engine.wait(await engine.submit(context(), value))
    finally:
        await engine.close()


async def test_sync_callable_runs() -> None:
    assert await call("sync_double", {"n": 21}) == {"doubled": 42}


async def test_async_callable_gets_the_context() -> None:
    assert await call("async_with_context", {"n": 1}) == {"run": "run-1", "key": "idem-1", "n": 1}


async def test_an_exception_becomes_a_failure_named_after_its_class() -> None:
    with pytest.raises(EngineFailure) as caught:
        await call("declines", {})
    assert caught.value.type == "CardDeclined"
    assert "card 4242 declined" in caught.value.message


async def test_engine_failure_passes_through() -> None:
    with pytest.raises(EngineFailure) as caught:
        await call("gives_up", {})
    assert (caught.value.type, caught.value.retryable) == ("OutOfStock", False)


async def test_cancel_stops_an_async_callable() -> None:
    engine = PythonEngine({"callable": f"{__name__}:sleeps"})
    handle = await engine.submit(context(), {})
    await engine.cancel(handle)
    with pytest.raises(asyncio.CancelledError):
        await engine.wait(handle)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "module:function"),
        ("nonexistent_module_xyz:f", "cannot import"),
        (f"{__name__}:missing", "no attribute"),
        (f"{__name__}:CardDeclined.args", "not callable"),
    ],
)
def test_bad_callables_are_config_errors(target: str, message: str) -> None:
    with pytest.raises(EngineConfigError, match=message):
        PythonEngine({"callable": target})
