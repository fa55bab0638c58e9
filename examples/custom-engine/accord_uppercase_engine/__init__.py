"""An Accord engine adapter that upper-cases every string in the task's input.

Registered as ``uppercase`` in the ``accord.engines`` entry-point group (see pyproject.toml).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

__all__ = ["UppercaseEngine"]


def _shout(value: Any, suffix: str) -> Any:
    if isinstance(value, str):
        return value.upper() + suffix
    if isinstance(value, dict):
        return {key: _shout(item, suffix) for key, item in value.items()}
    if isinstance(value, list):
        return [_shout(item, suffix) for item in value]
    return value


class UppercaseEngine:
    name: ClassVar[str] = "uppercase"

    def __init__(self, config: Mapping[str, Any]) -> None:
        problems = [
            (key, "unknown option for the uppercase engine") for key in sorted(set(config) - {"suffix"})
        ]
        suffix = config.get("suffix", "")
        if not isinstance(suffix, str):
            problems.append(("suffix", "must be a string"))
        if problems:
            raise EngineConfigError(problems)
        self._suffix = suffix

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        if not isinstance(input, dict):
            raise EngineFailure("the uppercase engine needs a JSON object", type="BadInput", retryable=False)
        return Handle(details={"engine": self.name}, state={"input": input, "traceparent": task.traceparent})

    async def wait(self, handle: Handle) -> Any:
        await asyncio.sleep(0)
        return _shout(handle.state["input"], self._suffix)

    async def cancel(self, handle: Handle) -> None:
        return None

    async def close(self) -> None:
        return None
