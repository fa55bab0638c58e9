"""Fuzzing the file loaders a team's text reaches: the contract, workflow and agent config
parsers. Whatever the text, a loader answers with the file's problems (``FileProblemsError``, exit
2, naming the line) or a parsed file: never another exception (a traceback at the CLI, INTERNAL
over gRPC). The texts are mutations of real files (lines dropped, duplicated, swapped; values
replaced by YAML's odd scalars, aliases, deep nesting, huge numbers, invalid characters), so they
reach past the YAML parser into every check. ``make test`` runs a short budget, ``make soak`` a
long one (issue 15's fuzz suite; the RPC and UI fuzzing is tests/e2e/test_fuzz_requests.py)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import FileProblemsError
from contracts.loader import parse_contract_text, parse_workflow_text
from team_agent.config import parse_config
from tests.support.soak import sized

ROOT = Path(__file__).resolve().parents[2]
SEEDS = {
    "contract": sorted((ROOT / "examples").rglob("contracts/*.yaml")),
    "workflow": sorted((ROOT / "examples").rglob("workflows/*.yaml")),
    "agent": sorted(
        {*(ROOT / "examples").rglob("agent*.yaml"), *(ROOT / "examples" / "agents").glob("*.yaml")}
    ),
}
ODD_SCALARS = [
    ".nan",
    ".inf",
    "-.inf",
    "~",
    "null",
    "[]",
    "{}",
    "''",
    "1e400",
    "9" * 5000,
    "-0",
    "0x1F",
    "!!binary aGk=",
    "&a [*a]",
    "*nowhere",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "\ud800",
    "\x00",
    "yes",
    "2001-12-14",
    "'${input.x}'",
    '"${steps.a.output.b}"',
    "{a: &x [1], b: *x}",
    "- - - -",
    "? complex key",
    "|\n  block",
    "@1",
    "^99999999999",
    "2147483648.0.0",
]


def _seed_texts(kind: str) -> list[str]:
    return [path.read_text() for path in SEEDS[kind]]


@st.composite
def _mutated(draw: st.DrawFn, kind: str) -> str:
    lines = draw(st.sampled_from(_seed_texts(kind))).splitlines()
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "swap", "value", "indent", "noise"]))
        if action == "drop":
            del lines[at]
        elif action == "dup":
            lines.insert(at, lines[at])
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "value":
            key, colon, _ = lines[at].partition(":")
            lines[at] = f"{key}{colon or ':'} {draw(st.sampled_from(ODD_SCALARS))}"
        elif action == "indent":
            lines[at] = " " * draw(st.integers(0, 7)) + lines[at].lstrip()
        else:
            lines[at] = draw(st.text(max_size=40))
    return "\n".join(lines) + "\n"


def _load(kind: str, text: str) -> None:
    try:
        if kind == "contract":
            parse_contract_text(text, "fuzz.yaml")
        elif kind == "workflow":
            parse_workflow_text(text, "fuzz.yaml")
        else:
            parse_config(text, "fuzz.yaml", environ={"TOKEN": "t"}, build_adapters=False)
    except FileProblemsError as problems:
        assert str(problems).strip(), "a refusal must say what is wrong"


@sized("examples", short=60, soak=1500)
def test_the_loaders_answer_any_text_with_its_problems_or_a_parsed_file(examples: int) -> None:
    assert all(SEEDS.values()), SEEDS  # the seeds are the examples the repository ships

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(SEEDS)).flatmap(lambda kind: st.tuples(st.just(kind), _mutated(kind))))
    def check(case: tuple[str, str]) -> None:
        _load(*case)

    check()


def test_what_the_fuzzing_found_is_a_problem_of_the_file() -> None:
    """A self-referencing alias recursed without end; a 5,000-digit number raised ValueError; a
    sensitive path was looked up in a schema whose ``required`` was a number (``.nan``); a version
    of 2^31 passed the file schema's pattern and raised VersionError."""
    contract = _seed_texts("contract")[0]
    assert "required: [" in contract and "sensitive:" in contract
    for text, said in [
        (contract + "x-cycle: &a [*a]\n", "a YAML alias refers to a list or mapping that holds it"),
        (contract.replace("version:", "x-big: " + "9" * 5000 + "\nversion:", 1), "a number too long"),
        (contract.replace("required: [", "required: .nan\n  x-was: [", 1), "nan is not of type 'array'"),
        (contract.replace("version: 1.2.0", "version: 2147483648.0.0", 1), "must be below 2^31"),
    ]:
        try:
            parse_contract_text(text, "c.yaml")
        except FileProblemsError as problems:
            assert said in str(problems), str(problems)
        else:
            raise AssertionError(f"accepted: {said}")
