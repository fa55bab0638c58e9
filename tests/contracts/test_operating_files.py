"""What workflow files say about operating runs, as the loader and the composition checker read
it: waiting steps (``wait_for``), ``schedules:`` and the run ``timeout:``; each mistake named
with its line and field."""

from __future__ import annotations

import pytest

from contracts.composition import ContractCatalog, check_workflow
from contracts.errors import FileProblemsError
from contracts.loader import parse_contract_text, parse_workflow_text
from contracts.schedules import due_between
from tests.support.scenario import contract

HEAD = (
    "workflow: ops/report\ninput: {type: object, required: [region], properties: {region: {type: string}}}\n"
)
CALL = '  pack:\n    contract: ops/pack@^1\n    input: {order_id: "${input.region}"}\n'


def _problems(text: str) -> str:
    with pytest.raises(FileProblemsError) as caught:
        parse_workflow_text(text, "w.yaml")
    return str(caught.value)


def test_schedules_and_timeout_are_read() -> None:
    workflow = parse_workflow_text(
        HEAD
        + "timeout: 2h\nsteps:\n"
        + CALL
        + "schedules:\n"
        + '  - {id: nightly, cron: "0 2 * * *", timezone: Europe/Berlin, input: {region: eu}, overlap: queue,'
        + " catch_up: all, max_catch_up: 3}\n"
        + '  - {id: hourly, cron: "0 * * * *", input: {region: us}}\n',
        "w.yaml",
    )
    assert workflow.timeout == 7200
    nightly, hourly = workflow.schedules
    assert (nightly.id, nightly.timezone, nightly.overlap, nightly.catch_up, nightly.max_catch_up) == (
        "nightly",
        "Europe/Berlin",
        "queue",
        "all",
        3,
    )
    assert (hourly.timezone, hourly.overlap, hourly.catch_up, hourly.max_catch_up) == (
        "UTC",
        "skip",
        "none",
        10,
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (
            '{id: a, cron: "0 2 * *", input: {region: eu}}',
            "w.yaml:8: schedules[0].cron: cron '0 2 * *' has 4 fields",
        ),
        (
            '{id: a, cron: "0 25 * * *", input: {region: eu}}',
            "schedules[0].cron: cron '0 25 * * *' is not valid",
        ),
        (
            '{id: a, cron: "0 2 * * *", timezone: Mars/Olympus, input: {region: eu}}',
            "'Mars/Olympus' is not a time zone",
        ),
        (
            '{id: a, cron: "0 2 * * *", input: {region: 3}}',
            "schedules[0].input: does not match the workflow's input schema",
        ),
        ('{id: a, cron: "0 2 * * *", input: {region: eu}, overlap: sometimes}', "schedules[0].overlap"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_field(schedule: str, expected: str) -> None:
    assert expected in _problems(HEAD + "steps:\n" + CALL + f"schedules:\n  - {schedule}\n")


def test_two_schedules_with_one_id_are_refused() -> None:
    text = (
        HEAD
        + "steps:\n"
        + CALL
        + "schedules:\n"
        + '  - {id: a, cron: "0 2 * * *", input: {region: eu}}\n' * 2
    )
    assert "schedule id 'a' is used twice" in _problems(text)


def test_daylight_saving_as_the_cron_library_defines_it() -> None:
    # Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29 and back from 03:00 to 02:00 on 2026-10-25.
    from datetime import UTC, datetime

    def ms(*args: int) -> int:
        return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)

    spring = due_between("30 2 * * *", "Europe/Berlin", ms(2026, 3, 28, 0), ms(2026, 3, 30, 12), 10)
    # 02:30 does not exist on the 29th: it runs at 03:00 local (01:00 UTC).
    assert spring == [ms(2026, 3, 28, 1, 30), ms(2026, 3, 29, 1, 0), ms(2026, 3, 30, 0, 30)]
    autumn = due_between("30 2 * * *", "Europe/Berlin", ms(2026, 10, 24, 12), ms(2026, 10, 25, 12), 10)
    assert autumn == [ms(2026, 10, 25, 0, 30)]  # 02:30 happens twice; it runs once, the first time


def test_waiting_steps_are_typed_by_the_composition_checker() -> None:
    catalog = ContractCatalog()
    catalog.add(parse_contract_text(contract("ops/pack"), "c.yaml"))
    text = (
        HEAD
        + "steps:\n"
        + "  approve:\n    wait_for:\n      approval: {by: [finance], timeout: 2d}\n"
        + "  ack:\n    wait_for:\n      signal: {name: ack, schema: {type: object, required: [n], properties: {n: {type: integer}}}}\n"
        + '  pack:\n    contract: ops/pack@^1\n    when: "${steps.approve.output.approved}"\n'
        + '    input: {order_id: "${steps.ack.output.n}"}\n'
        + 'output: {who: "${steps.approve.output.byy}"}\n'
    )
    findings = [
        f.message for f in check_workflow(parse_workflow_text(text, "w.yaml"), catalog).findings if f.breaking
    ]
    assert any("does not declare 'byy'" in f and "approval of step 'approve'" in f for f in findings), (
        findings
    )
    assert any("input.order_id" in f and "integer" in f for f in findings), findings


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("  x: {input: {}}", "steps.x: a step needs 'contract'"),
        ("  x: {contract: ops/pack@^1, wait_for: {approval: {}}}", "not both"),
        (
            "  x: {wait_for: {approval: {}}, retry: {max_attempts: 2}}",
            "steps.x.retry: 'retry' is for steps that call a contract",
        ),
        ("  x: {wait_for: {approval: {on_timeout: later}}}", "steps.x.wait_for.approval.on_timeout"),
        ("  x: {wait_for: {signal: {name: s, on_timeout: approve}}}", "steps.x.wait_for.signal.on_timeout"),
        ("  x: {wait_for: {signal: {by: [a]}}}", "name"),
    ],
)
def test_a_bad_waiting_step_is_refused_naming_its_field(step: str, expected: str) -> None:
    assert expected in _problems(HEAD + "steps:\n" + step + "\n")
