"""The engine adapter interface: the plug between an agent and a team's engine.

An adapter is found by name through the entry-point group ``accord.engines`` (a team can ship one
in its own package). The agent builds one adapter per binding from the binding's ``with:`` mapping
(secrets already resolved), and drives each task through it:

    handle = await adapter.submit(task, input)   # start the work; returns quickly
    output = await adapter.wait(handle)          # until done: output JSON, or raises EngineFailure
    await adapter.cancel(handle)                 # on cancellation or timeout
    await adapter.close()                        # when the binding is dropped

A task failing on its engine is data: the adapter raises ``EngineFailure`` (retryable or not),
and the agent reports it as a failed attempt. Validation of input/output against the contract is
the agent's job, not the adapter's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from contracts.errors import AccordError
from team_agent._plugins import PluginError, load_plugin

ENTRY_POINT_GROUP = "accord.engines"


@dataclass(frozen=True)
class TaskContext:
    """What an adapter knows about the task it runs."""

    task_id: str
    attempt_id: str
    attempt: int
    run_id: str
    step_id: str
    workflow: str
    contract: str  # "team/name"
    contract_version: str
    idempotency_key: str
    trace_context: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None  # unix seconds

    @property
    def traceparent(self) -> str:
        return self.trace_context.get("traceparent", "")


@dataclass
class Handle:
    """An adapter's reference to started work. ``details`` is shown in heartbeats and errors
    (engine run id, URL...); adapters may keep private state in ``state``."""

    details: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


class EngineFailure(AccordError):
    """The engine ran the task and it failed (or could not be started)."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        type: str = "EngineError",
        retryable: bool = True,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.retryable = retryable
        self.details = dict(details or {})


class EngineConfigError(AccordError):
    """A binding's ``with:`` mapping is wrong; ``problems`` are (field, message) pairs."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))


@runtime_checkable
class EngineAdapter(Protocol):
    """What every engine adapter implements. Construct with ``Adapter(config)``, where config is
    the binding's ``with:`` mapping with secrets resolved; raise ``EngineConfigError`` listing
    every problem."""

    name: ClassVar[str]

    async def submit(self, task: TaskContext, input: Any) -> Handle: ...

    async def wait(self, handle: Handle) -> Any: ...

    async def cancel(self, handle: Handle) -> None: ...

    async def close(self) -> None: ...


def load_engine(name: str) -> type[EngineAdapter]:
    """The adapter class registered under ``name``; a clear error lists the installed ones."""
    try:
        cls: type[EngineAdapter] = load_plugin(ENTRY_POINT_GROUP, name, kind="engine", kinds="engines")
    except PluginError as exc:
        raise EngineConfigError([("engine", str(exc))]) from exc
    return cls
