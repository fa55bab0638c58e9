"""Hostile contract and workflow files, and backtracking patterns, against the real coordinator
(issue 15, findings 1 and 2): each is refused or bounded, and another team's run still finishes
meanwhile (docs/contracts.md, "Limits" and "Regular expressions")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError, InvalidArgumentError, RemoteError
from contracts.loader import parse_contract_text
from coordinator.store.records import AuditRecord, ContractRecord
from coordinator.store.sqlite import SqliteStore
from tests.contracts.test_limits import alias_bomb
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract, start_run, wait_run
from tests.support.wait import wait_until

CHARGE = contract("payments/charge")
PAY = """
workflow: payments/pay
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.charge.output.ref}"}
"""
REDOS = "^(a+)+$"
EVIL = "a" * 30 + "!"


async def _other_team_run_finishes(coordinator: CoordinatorProcess, payments: str, order: str) -> None:
    async with coordinator.client(payments) as client:
        started = await start_run(client, "payments/pay", {"order_id": order})
        run = await wait_run(client, started.run.run_id, within=120)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run


async def _payments(coordinator: CoordinatorProcess) -> tuple[str, TestAgent]:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, CHARGE)
    await coordinator.register_workflow(payments, PAY)

    async def charge(call: Call) -> dict[str, str]:
        return {"ref": f"ch-{call.input['order_id']}"}

    agent = TestAgent(coordinator.address, payments, "payments", {"payments/charge@1": charge})
    await agent.start()
    return payments, agent


async def _meanwhile(
    coordinator: CoordinatorProcess, payments: str, hostile: Callable[[], Awaitable[Any]]
) -> Any:
    """Start ``hostile``, require the other team's run to finish, then return what ``hostile``
    ended with (its result or the exception it raised)."""
    attack = asyncio.ensure_future(hostile())
    await _other_team_run_finishes(coordinator, payments, f"o-{id(attack)}")
    try:
        return await asyncio.wait_for(attack, timeout=120)
    except Exception as exc:  # the refusal we look at
        return exc


def _many_properties(count: int) -> str:
    return contract(
        "acme/wide",
        input_props="{" + ", ".join(f"p{i}: {{}}" for i in range(count)) + "}",
        input_required="[]",
    )


HOSTILE_FILES = {
    "alias-bomb": (alias_bomb(), "values once its YAML aliases are expanded"),
    "5MB-description": (contract("acme/long") + "notes: " + "x" * (5 * 1024 * 1024) + "\n", "limit"),
    "100k-properties": (_many_properties(100_000), "limit"),
    "3k-properties": (_many_properties(3_000), "properties, over the limit of 2000"),
    "10k-sensitive-paths": (
        contract("acme/secret", extra="sensitive: [" + ", ".join(["input.order_id"] * 10_000) + "]\n"),
        "sensitive paths, over the limit of 500",
    ),
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "register"])
async def test_hostile_contract_files_are_refused_while_another_team_runs(
    coordinator: CoordinatorProcess, dry_run: bool
) -> None:
    payments, agent = await _payments(coordinator)
    acme = await coordinator.create_team("acme")
    try:
        for name, (text, expected) in HOSTILE_FILES.items():
            outcome = await _meanwhile(
                coordinator,
                payments,
                lambda text=text: coordinator.register_contract(acme, text, dry_run=dry_run),
            )
            assert isinstance(outcome, RemoteError), (name, outcome)
            assert expected in str(outcome) + " ".join(outcome.details), (name, outcome)
    finally:
        await agent.stop()
    # the CLI says so with exit 2, also with --dry-run
    bomb = coordinator.home / "bomb.yaml"
    bomb.write_text(alias_bomb())
    result = await coordinator.acli("contract", "register", str(bomb), "--dry-run", token=acme)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bomb.yaml" in result.stderr and "limit 50000" in result.stderr, result.stderr
    assert "Traceback" not in coordinator.log()


async def test_a_backtracking_pattern_does_not_stall_the_coordinator(coordinator: CoordinatorProcess) -> None:
    payments, agent = await _payments(coordinator)
    acme = await coordinator.create_team("acme")
    await coordinator.register_contract(
        acme, contract("acme/echo", output_props=f"{{ref: {{type: string, pattern: '{REDOS}'}}}}")
    )
    await coordinator.register_workflow(
        acme,
        f"""
workflow: acme/match
input: {{type: object, required: [order_id], properties: {{order_id: {{type: string, pattern: '{REDOS}'}}}}}}
steps:
  echo:
    contract: acme/echo@^1
    input: {{order_id: "${{input.order_id}}"}}
output: {{ref: "${{steps.echo.output.ref}}"}}
""",
    )

    async def echo(call: Call) -> dict[str, str]:
        return {"ref": EVIL}  # a malicious agent's output, matched against the contract's pattern

    evil_agent = TestAgent(coordinator.address, acme, "acme", {"acme/echo@1": echo})
    await evil_agent.start()
    try:
        async with coordinator.client(acme) as client:
            # a run input that would backtrack for minutes on Python's re: refused at once
            outcome = await _meanwhile(
                coordinator, payments, lambda: start_run(client, "acme/match", {"order_id": EVIL})
            )
            assert isinstance(outcome, InvalidArgumentError), outcome
            assert "does not match" in str(outcome) + " ".join(outcome.details)
            # an agent's output that would: the attempt fails validation, the run moves on
            started = await start_run(client, "acme/match", {"order_id": "aaaa"})
            run = await wait_run(client, started.run.run_id, within=120)
            await _other_team_run_finishes(coordinator, payments, "o-after")
        assert run.status == pb.RUN_STATUS_FAILED, run
        # and a lookahead is refused at registration, naming the field
        with pytest.raises(InvalidArgumentError) as refused:
            await coordinator.register_contract(
                acme,
                contract("acme/look", "1.0.0", input_props="{order_id: {type: string, pattern: '^(?=a)a$'}}"),
            )
        assert "input.properties.order_id.pattern" in " ".join(refused.value.details), refused.value.details
    finally:
        await evil_agent.stop()
        await agent.stop()
    assert "Traceback" not in coordinator.log()


async def test_a_registered_pattern_re2_cannot_run_keeps_working_and_is_listed_at_start(
    coordinator: CoordinatorProcess,
) -> None:
    acme = await coordinator.create_team("acme")
    coordinator.stop()
    # registered before lookaround was refused: written straight into the store
    text = contract("acme/look", input_props="{order_id: {type: string, pattern: '^(?=o)o-'}}")
    looks = parse_contract_text(text, "look.yaml", registered=True)
    store = SqliteStore(coordinator.db)
    await store.open()
    try:
        await store.add_contract(
            ContractRecord(looks, 1, "acme"), AuditRecord(1, "acme", "contract.register", looks.ref, "acme")
        )
    finally:
        await store.close()
    coordinator.restart()
    assert "schema patterns RE2 cannot run" in coordinator.log()
    assert "acme/look@1.0.0 input.properties.order_id.pattern: ^(?=o)o-" in coordinator.log()
    # it still works: a workflow calling it registers and its runs are checked with the pattern
    await coordinator.register_workflow(
        acme, PAY.replace("payments/pay", "acme/pay").replace("payments/charge", "acme/look")
    )

    async def look(call: Call) -> dict[str, str]:
        return {"ref": call.input["order_id"]}

    agent = TestAgent(coordinator.address, acme, "acme", {"acme/look@1": look})
    await agent.start()
    try:
        async with coordinator.client(acme) as client:
            good = await wait_run(
                client, (await start_run(client, "acme/pay", {"order_id": "o-1"})).run.run_id
            )
            bad = await wait_run(
                client, (await start_run(client, "acme/pay", {"order_id": "x-1"})).run.run_id
            )
    finally:
        await agent.stop()
    assert good.status == pb.RUN_STATUS_SUCCEEDED, good
    assert bad.status == pb.RUN_STATUS_FAILED, bad
    assert "Traceback" not in coordinator.log()


def _large_contract(name: str, version: str = "1.0.0", fields: int = 1_900, required: str = "[]") -> str:
    props = ", ".join(f"p{i}: {{type: string, description: 'field {i} of the order'}}" for i in range(fields))
    return contract(name, version, input_props="{" + props + "}", input_required=required)


async def test_large_files_are_checked_in_worker_processes(coordinator: CoordinatorProcess) -> None:
    payments, agent = await _payments(coordinator)
    acme = await coordinator.create_team("acme")
    try:
        # read, then checked for compatibility against 1.0.0, in a worker: the other team's run
        # finishes meanwhile
        first = await _meanwhile(
            coordinator, payments, lambda: coordinator.register_contract(acme, _large_contract("acme/big"))
        )
        assert not isinstance(first, Exception) and first.registered, first
        second = await _meanwhile(
            coordinator,
            payments,
            lambda: coordinator.register_contract(
                acme, _large_contract("acme/big", "1.1.0", required="[p0]")
            ),
        )
        assert isinstance(second, FailedPreconditionError), second  # a new required input breaks callers
        assert "not compatible with major 1" in str(second)
    finally:
        await agent.stop()
    assert "Traceback" not in coordinator.log()


def _costly_contract(version: str, alternatives: int) -> str:
    """A small file (10 KB) whose compatibility check compares its oneOf alternatives pairwise:
    about a tenth of a second of CPU, over the inline budget."""
    alts = ", ".join(
        f"{{type: object, properties: {{k: {{const: v{i}}}, x: {{type: integer, minimum: {i}}}}}}}"
        for i in range(alternatives)
    )
    return contract(
        "acme/costly", version, input_props="{order: {oneOf: [" + alts + "]}}", input_required="[order]"
    )


async def test_a_small_but_costly_check_leaves_the_loop_for_a_worker(coordinator: CoordinatorProcess) -> None:
    """Small files are checked on the event loop only within 50 ms of CPU: this one's check runs
    over, is made again in a worker, and answers as it would have inline."""
    payments, agent = await _payments(coordinator)
    acme = await coordinator.create_team("acme")
    try:
        await coordinator.register_contract(acme, _costly_contract("1.0.0", 60))
        refused = await _meanwhile(
            coordinator, payments, lambda: coordinator.register_contract(acme, _costly_contract("1.1.0", 59))
        )
        assert isinstance(refused, FailedPreconditionError), refused
        assert "might match more than one oneOf alternative" in str(refused)
    finally:
        await agent.stop()
    assert "the compatibility check of acme/costly@1.1.0 against acme/costly@1.0.0 took over 50ms" in (
        coordinator.log()
    )
    assert "Traceback" not in coordinator.log()


async def test_a_check_over_the_budget_is_refused_and_the_coordinator_goes_on(tmp_path: Path) -> None:
    coordinator = CoordinatorProcess.start(tmp_path / "home", env={"ACCORD_CHECK_BUDGET": "50ms"})
    try:
        payments, agent = await _payments(coordinator)
        acme = await coordinator.create_team("acme")
        try:
            for _ in range(2):  # the worker is replaced: the second is refused the same way
                outcome = await _meanwhile(
                    coordinator,
                    payments,
                    lambda: coordinator.register_contract(acme, _large_contract("acme/big")),
                )
                assert isinstance(outcome, FailedPreconditionError), outcome
                assert "check budget of 0.05s (--check-budget)" in str(outcome), outcome
            # small files are read inline, within the limits: they register
            await coordinator.register_contract(acme, contract("acme/small"))
            result = await coordinator.acli(
                "contract",
                "register",
                str(_write(tmp_path / "big.yaml", _large_contract("acme/big"))),
                token=acme,
            )
            assert result.returncode == 1 and "--check-budget" in result.stderr, result.stdout + result.stderr
        finally:
            await agent.stop()
        assert "ran over the check budget" in coordinator.log()
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_workers_exit_when_the_coordinator_is_killed(coordinator: CoordinatorProcess) -> None:
    acme = await coordinator.create_team("acme")
    await coordinator.register_contract(acme, _large_contract("acme/big"))  # starts the workers
    assert coordinator.proc is not None
    pid = coordinator.proc.pid
    children = _children(pid)
    assert children, "no worker process was started"
    os.kill(pid, signal.SIGKILL)  # the coordinator alone: its workers are left to notice
    await wait_until(
        lambda: not [child for child in children if Path(f"/proc/{child}").exists()],
        "the workers of a killed coordinator to exit",
        within=60,
    )


def _children(pid: int) -> list[str]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.append(stat.parent.name)
    return found


ITEMS = """
workflow: acme/items
input:
  type: object
  required: [items]
  properties:
    items: {type: array, items: {type: object, required: [sku], properties: {sku: {type: string, pattern: '^[A-Z0-9-]+$'}}}}
steps:
  echo:
    contract: acme/echo@^1
    input: {order_id: "x"}
output: {ref: "${steps.echo.output.ref}"}
"""


async def _items_world(coordinator: CoordinatorProcess) -> tuple[str, TestAgent]:
    acme = await coordinator.create_team("acme")
    await coordinator.register_contract(
        acme,
        contract(
            "acme/echo",
            output_props="{ref: {type: string}, items: {type: array, items: {type: string, pattern: '^[a-z]+$'}}}",
        ),
    )
    await coordinator.register_workflow(acme, ITEMS)

    async def echo(call: Call) -> dict[str, Any]:
        return {"ref": "r", "items": ["abc"] * 40_000}  # about 280 KB: validated in a worker

    agent = TestAgent(coordinator.address, acme, "acme", {"acme/echo@1": echo})
    await agent.start()
    return acme, agent


async def test_large_payloads_are_validated_in_worker_processes(coordinator: CoordinatorProcess) -> None:
    payments, agent = await _payments(coordinator)
    acme, echo_agent = await _items_world(coordinator)
    big = {"items": [{"sku": "AB-12"}] * 20_000}  # about 340 KB
    try:
        async with coordinator.client(acme) as client:
            started = await _meanwhile(coordinator, payments, lambda: start_run(client, "acme/items", big))
            assert not isinstance(started, Exception), started
            run = await wait_run(client, started.run.run_id, within=120)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            bad = await _meanwhile(
                coordinator,
                payments,
                lambda: start_run(client, "acme/items", {"items": [{"sku": "ab"}] * 20_000}),
            )
            assert isinstance(bad, InvalidArgumentError), bad
    finally:
        await echo_agent.stop()
        await agent.stop()
    assert "Traceback" not in coordinator.log()


async def test_a_payload_over_the_check_budget_is_refused(tmp_path: Path) -> None:
    coordinator = CoordinatorProcess.start(tmp_path / "home", env={"ACCORD_CHECK_BUDGET": "50ms"})
    try:
        acme, echo_agent = await _items_world(coordinator)
        try:
            async with coordinator.client(acme) as client:
                with pytest.raises(FailedPreconditionError, match=r"check budget of 0.05s"):
                    await start_run(client, "acme/items", {"items": [{"sku": "AB-12"}] * 20_000})
                # the agent's large output cannot be validated in time: the attempt fails, not retried
                started = await start_run(client, "acme/items", {"items": []})
                run = await wait_run(client, started.run.run_id, within=120)
            assert run.status == pb.RUN_STATUS_FAILED, run
            assert "could not be validated" in run.error.message and "check budget" in run.error.message, (
                run.error
            )
        finally:
            await echo_agent.stop()
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()


# A run input under the inline size (checked on the event loop in a few ms) mapped three times into
# a step's input over it. WIDE's schema has a keyword that does not tick the inline budget
# (uniqueItems, on a field the input leaves out), so the mapped input is validated in a worker,
# within the check budget; WIDE_QUICK's has none, and it is validated on the loop
# (coordinator/checks.py, validate_large_inline).
FANS = """
workflow: acme/fans
input: {type: object, required: [s], properties: {s: {type: string}}}
steps:
  wide:
    contract: acme/wide@^1
    input: {a: "${input.s}", b: "${input.s}", c: "${input.s}"}
output: {ref: "${steps.wide.output.ref}"}
"""
WIDE_QUICK = contract(
    "acme/wide",
    input_props="{a: {type: string, pattern: '^[a-z]+$'}, b: {type: string}, c: {type: string}}",
    input_required="[a, b, c]",
)
WIDE = contract(
    "acme/wide",
    input_props=(
        "{a: {type: string, pattern: '^[a-z]+$'}, b: {type: string}, c: {type: string},"
        " d: {type: array, uniqueItems: true}}"
    ),
    input_required="[a, b, c]",
)


async def _fans_world(
    coordinator: CoordinatorProcess, wide_contract: str = WIDE, pad: int = 0
) -> tuple[str, TestAgent, list[Call]]:
    """``pad``: the agent's outputs carry that many more bytes (an input of "y"s gets an output
    that does not match the contract)."""
    acme = await coordinator.create_team("acme")
    await coordinator.register_contract(acme, wide_contract)
    await coordinator.register_workflow(acme, FANS)
    calls: list[Call] = []

    async def wide(call: Call) -> dict[str, Any]:
        calls.append(call)
        ref: Any = len(call.input["a"]) if call.input["a"].startswith("y") else str(len(call.input["a"]))
        return {"ref": ref, "pad": "p" * pad} if pad else {"ref": ref}

    agent = TestAgent(coordinator.address, acme, "acme", {"acme/wide@1": wide})
    await agent.start()
    return acme, agent, calls


async def test_a_large_mapped_input_is_validated_in_a_worker(coordinator: CoordinatorProcess) -> None:
    """Issue 15: a step's mapped input over the inline size goes through the worker pool, as run
    inputs and agent outputs do; valid, the step runs; invalid, the run fails naming the contract;
    another team's run finishes meanwhile."""
    payments, agent = await _payments(coordinator)
    acme, wide_agent, calls = await _fans_world(coordinator)
    valid, invalid = "x" * 7_000, "X" * 7_000  # 21 KB mapped, over the 16 KiB inline size
    try:
        async with coordinator.client(acme) as client:
            started = await _meanwhile(
                coordinator, payments, lambda: start_run(client, "acme/fans", {"s": valid})
            )
            run = await wait_run(client, started.run.run_id, within=120)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            assert run.output_json and '"7000"' in run.output_json, run
            assert len(calls) == 1 and calls[0].input == {"a": valid, "b": valid, "c": valid}
            started = await _meanwhile(
                coordinator, payments, lambda: start_run(client, "acme/fans", {"s": invalid})
            )
            run = await wait_run(client, started.run.run_id, within=120)
        assert run.status == pb.RUN_STATUS_FAILED, run
        assert run.error.type == "ContractViolation", run.error
        assert "the mapped input does not match acme/wide@1.0.0" in run.error.message, run.error
        assert "$.a: " in run.error.message, run.error
        assert len(calls) == 1  # the invalid input never reached the agent
    finally:
        await wide_agent.stop()
        await agent.stop()
    assert "Traceback" not in coordinator.log()


def _children(pid: int) -> list[str]:
    """The processes ``pid`` started that still run (a worker pool's, once one is started)."""
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def test_a_large_mapped_input_with_a_quick_schema_is_validated_on_the_loop(
    coordinator: CoordinatorProcess,
) -> None:
    """A schema that looks at a few fields of a large run input, mapped input or output is
    checked on the loop, in microseconds: the step starts at once, an invalid run input is
    refused, an invalid mapped input fails the run naming the field, so does an invalid output,
    and the coordinator never starts a worker process."""
    acme, wide_agent, calls = await _fans_world(coordinator, WIDE_QUICK, pad=20_000)
    valid, invalid = "x" * 7_000, "X" * 7_000  # 21 KB mapped, over the 16 KiB inline size
    try:
        async with coordinator.client(acme) as client:
            good = await wait_run(client, (await start_run(client, "acme/fans", {"s": valid})).run.run_id)
            bad = await wait_run(client, (await start_run(client, "acme/fans", {"s": invalid})).run.run_id)
            bad_output = await wait_run(
                client, (await start_run(client, "acme/fans", {"s": "y" * 7_000})).run.run_id
            )
            # run inputs over the inline size too: one valid, one whose s is not a string
            large = await wait_run(
                client, (await start_run(client, "acme/fans", {"s": "z", "note": "n" * 20_000})).run.run_id
            )
            with pytest.raises(InvalidArgumentError, match=r"\$\.s"):
                await start_run(client, "acme/fans", {"s": 5, "note": "n" * 20_000})
    finally:
        await wide_agent.stop()
    assert good.status == pb.RUN_STATUS_SUCCEEDED, good
    assert good.output_json and '"7000"' in good.output_json, good
    assert large.status == pb.RUN_STATUS_SUCCEEDED, large
    assert len(calls) == 3 and calls[0].input == {"a": valid, "b": valid, "c": valid}
    assert bad.status == pb.RUN_STATUS_FAILED, bad
    assert "the mapped input does not match acme/wide@1.0.0" in bad.error.message, bad.error
    assert "$.a: " in bad.error.message, bad.error
    assert bad_output.status == pb.RUN_STATUS_FAILED, bad_output
    assert "the output of acme/wide@1.0.0 does not match its schema" in bad_output.error.message
    assert "$.ref: " in bad_output.error.message, bad_output.error
    assert coordinator.proc is not None and _children(coordinator.proc.pid) == []
    assert "Traceback" not in coordinator.log()


async def test_a_large_mapped_input_over_the_check_budget_fails_its_run(tmp_path: Path) -> None:
    coordinator = CoordinatorProcess.start(tmp_path / "home", env={"ACCORD_CHECK_BUDGET": "50ms"})
    try:
        acme, wide_agent, calls = await _fans_world(coordinator)
        try:
            async with coordinator.client(acme) as client:
                started = await start_run(client, "acme/fans", {"s": "x" * 7_000})
                run = await wait_run(client, started.run.run_id, within=120)
        finally:
            await wide_agent.stop()
        # Spawning the worker pool alone takes longer than 50 ms: the budget is spent, the step
        # fails (not retried) saying so, and the run moves on to its end.
        assert run.status == pb.RUN_STATUS_FAILED, run
        assert run.error.type == "ContractViolation", run.error
        assert "mapped input of acme/wide@1.0.0 could not be validated" in run.error.message, run.error
        assert "check budget of 0.05s" in run.error.message, run.error
        assert not calls
        assert "ran over the check budget" in coordinator.log()
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()


def _costly_schema(depth: int, field: str) -> str:
    """A schema of under 1 KB whose validation doubles with each level: ``unevaluatedProperties``
    over ``anyOf`` makes the validator evaluate every alternative again at every level (depth 9:
    about 20 s of CPU for any payload; depth 6: about 0.2 s)."""
    defs: dict[str, Any] = {"l0": {"type": "object", "properties": {field: {"type": "string"}}}}
    for level in range(1, depth + 1):
        below = {"$ref": f"#/$defs/l{level - 1}"}
        defs[f"l{level}"] = {"anyOf": [below, below], "unevaluatedProperties": False}
    return json.dumps({"$defs": defs, "$ref": f"#/$defs/l{depth}"})


def _costly_world(input_depth: int, output_depth: int) -> tuple[str, str]:
    name = f"acme/nested-{input_depth}-{output_depth}"
    contract_text = (
        f"contract: {name}\nversion: 1.0.0\ndescription: a costly schema\n"
        f"input: {_costly_schema(input_depth, 'order_id')}\noutput: {_costly_schema(output_depth, 'ref')}\n"
    )
    workflow = (
        f"workflow: {name}\n"
        "input: {type: object, properties: {order_id: {type: string}, extra: {type: integer}}}\n"
        f'steps:\n  nested:\n    contract: {name}@^1\n    input: {{order_id: "${{input.order_id}}"}}\n'
        'output: {ref: "${steps.nested.output.ref}"}\n'
    )
    return contract_text, workflow


async def test_a_costly_schema_is_validated_in_a_worker_not_on_the_loop(tmp_path: Path) -> None:
    """A contract of under 1 KB whose schemas take seconds to validate any payload against: a
    run's small mapped input and an agent's small output are validated on the event loop only
    within the inline budget, then in a worker within the check budget. Valid outputs pass,
    invalid ones fail the attempt; an input over the check budget fails its run saying so, and
    another team's run started after it finishes first: the loop was never held."""
    coordinator = CoordinatorProcess.start(tmp_path / "home", env={"ACCORD_CHECK_BUDGET": "5s"})
    try:
        payments, agent = await _payments(coordinator)
        acme = await coordinator.create_team("acme")
        quick_contract, quick_workflow = _costly_world(1, 6)  # a cheap input, a costly output
        slow_contract, slow_workflow = _costly_world(9, 1)  # an input over the check budget
        for text in (quick_contract, slow_contract):
            await coordinator.register_contract(acme, text)
        for text in (quick_workflow, slow_workflow):
            await coordinator.register_workflow(acme, text)
        calls: list[Call] = []

        async def nested(call: Call) -> dict[str, Any]:
            calls.append(call)
            return {"ref": "r"} if call.input["order_id"] != "bad" else {"ref": "r", "extra": 1}

        acme_agent = TestAgent(
            coordinator.address,
            acme,
            "acme",
            {"acme/nested-1-6@1": nested, "acme/nested-9-1@1": nested},
        )
        await acme_agent.start()
        try:
            async with coordinator.client(acme) as client:
                good = await start_run(client, "acme/nested-1-6", {"order_id": "good"})
                bad = await start_run(client, "acme/nested-1-6", {"order_id": "bad"})
                good_run = await wait_run(client, good.run.run_id, within=120)
                bad_run = await wait_run(client, bad.run.run_id, within=120)
                assert good_run.status == pb.RUN_STATUS_SUCCEEDED, good_run
                assert bad_run.status == pb.RUN_STATUS_FAILED, bad_run
                assert bad_run.error.type == "ContractViolation", bad_run.error

                slow = await start_run(client, "acme/nested-9-1", {"order_id": "o-1"})
                async with coordinator.client(payments) as other:
                    started = await start_run(other, "payments/pay", {"order_id": "meanwhile"})
                    other_run = await wait_run(other, started.run.run_id, within=120)
                slow_run = await wait_run(client, slow.run.run_id, within=120)
        finally:
            await acme_agent.stop()
            await agent.stop()
        assert other_run.status == pb.RUN_STATUS_SUCCEEDED, other_run
        assert slow_run.status == pb.RUN_STATUS_FAILED, slow_run
        assert "mapped input of acme/nested-9-1@1.0.0 could not be validated" in slow_run.error.message
        assert "check budget of 5s" in slow_run.error.message, slow_run.error
        assert other_run.finished_unix_ms < slow_run.finished_unix_ms, (other_run, slow_run)
        assert [c.input["order_id"] for c in calls] == ["good", "bad"] or sorted(
            c.input["order_id"] for c in calls
        ) == ["bad", "good"]
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()
