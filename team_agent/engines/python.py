"""``python``: call a function in the agent's process.

    with:
      callable: "payments.charge:charge_card"   # module:function, sync or async
      path: ["./src"]                             # optional: directories to import from

The function takes the input (and the ``TaskContext`` when it accepts two parameters) and
returns the output. Sync functions run in a thread. Raising ``EngineFailure`` reports exactly
that failure; any other exception fails the attempt with the exception's class name as the error
type, so a contract's ``non_retryable: [CardDeclined]`` works with ``raise CardDeclined(...)``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext


def _accepts_context(function: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())
    return len(positional) >= 2 or varargs


class PythonEngine:
    name: ClassVar[str] = "python"

    def __init__(self, config: Mapping[str, Any]) -> None:
        problems = [
            (k, "unknown option for the python engine") for k in sorted(set(config) - {"callable", "path"})
        ]
        path = config.get("path", [])
        if isinstance(path, str):
            path = [path]
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            problems.append(("path", "must be a list of directories"))
            path = []
        target = config.get("callable")
        function: Callable[..., Any] | None = None
        if not isinstance(target, str) or ":" not in target:
            problems.append(
                ("callable", 'missing: write "module:function", e.g. "payments.charge:charge_card"')
            )
        else:
            for directory in path:
                if directory not in sys.path:
                    sys.path.insert(0, directory)
            module_name, _, attribute = target.partition(":")
            try:
                found: Any = importlib.import_module(module_name)
                for part in attribute.split("."):
                    found = getattr(found, part)
            except ImportError as exc:
                problems.append(("callable", f"cannot import module {module_name!r}: {exc}"))
            except AttributeError:
                problems.append(("callable", f"module {module_name!r} has no attribute {attribute!r}"))
            else:
                if callable(found):
                    function = found
                else:
                    problems.append(("callable", f"{target!r} is not callable"))
        if problems:
            raise EngineConfigError(problems)
        assert function is not None
        self._function = function
        self._target = str(target)
        self._pass_context = _accepts_context(function)
        self._is_async = inspect.iscoroutinefunction(function)
        self._running: set[asyncio.Task[Any]] = set()

    async def _call(self, task: TaskContext, input: Any) -> Any:
        args = (input, task) if self._pass_context else (input,)
        if self._is_async:
            return await self._function(*args)
        result = await asyncio.to_thread(self._function, *args)
        if inspect.isawaitable(result):
            return await result
        return result

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        running = asyncio.create_task(self._call(task, input))
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return Handle(details={"callable": self._target}, state={"task": running})

    async def wait(self, handle: Handle) -> Any:
        running: asyncio.Task[Any] = handle.state["task"]
        try:
            return await asyncio.shield(running)
        except EngineFailure:
            raise
        except asyncio.CancelledError:
            running.cancel()
            raise
        except Exception as exc:
            frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
            raise EngineFailure(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                type=type(exc).__name__,
                retryable=True,
                details={**handle.details, "traceback_tail": "".join(frames)[-3000:]},
            ) from exc

    async def cancel(self, handle: Handle) -> None:
        # A sync function running in a thread cannot be interrupted; its result is ignored.
        handle.state["task"].cancel()

    async def close(self) -> None:
        for running in list(self._running):
            running.cancel()
