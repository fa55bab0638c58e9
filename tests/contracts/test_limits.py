"""Files and schemas a team sends are bounded before any expensive work (docs/contracts.md,
"Limits"), and schema regular expressions run on RE2 (docs/contracts.md, "Regular expressions")."""

from __future__ import annotations

import time

import pytest

from contracts import limits
from contracts._yaml import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH, MAX_DOCUMENT_VALUES
from contracts.errors import FileProblemsError
from contracts.limits import InlineBudgetSpent, inline_budget, spend_inline
from contracts.loader import parse_contract_text, parse_workflow_text
from contracts.validation import validate_payload
from tests.support.scenario import contract


def alias_bomb(levels: int = 9) -> str:
    """A contract file of about 500 bytes whose aliases expand to 9**levels values."""
    lines = ["contract: acme/bomb", "version: 1.0.0", "x:", "- &a [a,a,a,a,a,a,a,a,a]"]
    names = "abcdefghijklmnopqrstuvwxyz"
    for level in range(1, levels):
        ref = f"*{names[level - 1]}"
        lines.append(f"- &{names[level]} [{','.join([ref] * 9)}]")
    lines += ["input: {type: object}", "output: {type: object}"]
    return "\n".join(lines) + "\n"


def problems_of(text: str, name: str = "c.yaml", *, workflow: bool = False) -> str:
    with pytest.raises(FileProblemsError) as refused:
        (parse_workflow_text if workflow else parse_contract_text)(text, name)
    return str(refused.value)


def test_an_alias_bomb_is_refused_naming_the_limit_without_expanding_it() -> None:
    text = alias_bomb()
    assert len(text.encode()) < 600
    message = problems_of(text, "bomb.yaml")
    assert f"more than {MAX_DOCUMENT_VALUES} values" in message and "aliases" in message
    assert message.startswith("bomb.yaml:")


def test_a_file_over_the_size_limit_is_refused_before_parsing() -> None:
    text = contract("acme/big", extra="") + "description: " + "x" * (30 * 1024 * 1024) + "\n"
    message = problems_of(text.replace("description: test contract acme/big\n", ""), "big.yaml")
    assert f"over the limit of {MAX_DOCUMENT_BYTES} bytes" in message


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_is_refused_naming_the_limit(suffix: str) -> None:
    message = problems_of("[" * 5000 + "]" * 5000, f"deep{suffix}")
    assert f"deeper than {MAX_DOCUMENT_DEPTH} levels" in message


def test_a_schema_with_too_many_properties_is_refused() -> None:
    many = "{" + ", ".join(f"p{i}: {{}}" for i in range(limits.MAX_SCHEMA_PROPERTIES + 1)) + "}"
    message = problems_of(contract("acme/wide", input_props=many, input_required="[]"))
    assert f"over the limit of {limits.MAX_SCHEMA_PROPERTIES}" in message and "input schema" in message


def test_100k_properties_are_refused_by_the_document_limits() -> None:
    many = "{" + ", ".join(f"p{i}: {{}}" for i in range(100_000)) + "}"
    message = problems_of(contract("acme/wide", input_props=many, input_required="[]"))
    assert "limit" in message


def test_a_deeply_nested_schema_is_refused() -> None:
    deep = "{type: object}"
    for _ in range(limits.MAX_SCHEMA_DEPTH // 2 + 1):  # two levels (schema, properties) each
        deep = f"{{type: object, properties: {{a: {deep}}}}}"
    workflow = f"workflow: acme/deep\ninput: {deep}\nsteps: {{}}\n"
    message = problems_of(workflow, "w.yaml", workflow=True)
    assert f"over the limit of {limits.MAX_SCHEMA_DEPTH}" in message and "workflow input schema" in message


def test_too_many_sensitive_paths_are_refused() -> None:
    paths = ", ".join(["input.order_id"] * (limits.MAX_SENSITIVE_PATHS + 1))
    message = problems_of(contract("acme/secret", extra=f"sensitive: [{paths}]\n"))
    assert f"over the limit of {limits.MAX_SENSITIVE_PATHS}" in message


def test_within_the_limits_a_contract_loads() -> None:
    many = "{" + ", ".join(f"p{i}: {{type: string}}" for i in range(500)) + "}"
    loaded = parse_contract_text(contract("acme/fine", input_props=many, input_required="[p1]"), "c.yaml")
    assert len(loaded.input_schema["properties"]) == 500


# ---------- regular expressions ----------

REDOS = "^(a+)+$"


def test_a_backtracking_pattern_runs_in_linear_time_on_re2() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": REDOS}}}
    # On Python's re this takes minutes (doubling per character); pytest-timeout guards the hang.
    violations = validate_payload(schema, {"code": "a" * 40 + "!"})
    assert [v.path for v in violations] == ["$.code"]
    assert validate_payload(schema, {"code": "a" * 40}) == []


def test_pattern_properties_and_additional_properties_match_on_re2() -> None:
    schema = {
        "type": "object",
        "patternProperties": {REDOS: {"type": "integer"}},
        "additionalProperties": False,
    }
    violations = validate_payload(schema, {"a" * 40 + "!": 1, "aaa": 2})
    assert [v.path for v in violations] == ["$"]


@pytest.mark.parametrize(
    ("pattern", "field"),
    [("^(?=a)a$", "input.properties.code.pattern"), (r"^(a)\1$", "input.properties.code.pattern")],
    ids=["lookahead", "backreference"],
)
def test_a_pattern_re2_cannot_run_is_refused_naming_the_field(pattern: str, field: str) -> None:
    text = contract(
        "acme/re", input_props=f"{{code: {{type: string, pattern: '{pattern}'}}}}", input_required="[]"
    )
    message = problems_of(text)
    assert field in message and "RE2" in message


def test_a_pattern_properties_key_re2_cannot_run_is_refused() -> None:
    text = (
        "workflow: acme/w\ninput:\n  type: object\n  patternProperties:\n"
        "    '^(?!x)': {type: string}\nsteps: {}\n"
    )
    message = problems_of(text, "w.yaml", workflow=True)
    assert "input.patternProperties" in message and "RE2" in message


def test_a_registered_file_read_again_keeps_a_pattern_re2_cannot_run() -> None:
    text = contract("acme/re", input_props="{code: {type: string, pattern: '^(?=a)a$'}}", input_required="[]")
    loaded = parse_contract_text(text, "c.yaml", registered=True)
    # it still validates, on Python's re (listed by the coordinator's warning at start)
    assert validate_payload(loaded.input_schema, {"code": "a"}) == []
    assert [v.path for v in validate_payload(loaded.input_schema, {"code": "b"})] == ["$.code"]


def test_the_violations_of_one_payload_are_capped() -> None:
    from contracts.validation import MAX_VIOLATIONS

    schema = {"type": "array", "items": {"type": "string"}}
    violations = validate_payload(schema, [1] * 20_000)
    assert len(violations) == MAX_VIOLATIONS + 1
    assert violations[-1].message == f"and more violations (only the first {MAX_VIOLATIONS} are listed)"


def _spin_under_budget(seconds: float, budget: float) -> float:
    """Spin for up to ``seconds`` of CPU under ``budget``, calling ``spend_inline`` as a check
    does; the CPU time spent when it stopped (by the budget, or at ``seconds``)."""
    start = time.thread_time()
    with inline_budget(budget):
        try:
            while time.thread_time() - start < seconds:
                spend_inline()
        except InlineBudgetSpent:
            pass
    return time.thread_time() - start


def test_the_inline_budget_stops_a_check_that_spends_it() -> None:
    # Stopped near its budget, not run to its end (the clock is read every few calls).
    assert _spin_under_budget(2.0, 0.05) < 1.0
    # Within its budget a check runs to its end.
    assert _spin_under_budget(0.02, 5.0) >= 0.02


def test_each_check_has_its_own_budget_and_none_outside() -> None:
    # A budget spent by one check does not carry over to the next one, nor outside any budget.
    assert _spin_under_budget(2.0, 0.05) < 1.0
    assert _spin_under_budget(0.1, 5.0) >= 0.1
    start = time.thread_time()
    while time.thread_time() - start < 0.1:
        spend_inline()  # no budget: never raises
    with inline_budget(5.0):
        # one inside a larger budget has its own, smaller one, and leaves the larger one unspent
        assert _spin_under_budget(2.0, 0.05) < 1.0
        assert _spin_under_budget(0.1, 5.0) >= 0.1


def test_a_budget_inside_another_ends_no_later_than_it() -> None:
    # A transition's budget bounds every check made in it, whatever budgets of their own they have
    # (a large payload's check in the transition that starts its step has one of 5 ms).
    with inline_budget(0.05):
        assert _spin_under_budget(2.0, 5.0) < 1.0
        assert _spin_under_budget(2.0, 5.0) < 0.1  # spent already: the next one stops at once
        with pytest.raises(InlineBudgetSpent):
            for _ in range(10_000_000):
                spend_inline()
