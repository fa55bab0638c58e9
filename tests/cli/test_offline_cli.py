"""The offline commands, run as a user runs them: the real ``accord`` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONTRACTS = EXAMPLES / "contracts"
ACCORD = Path(sys.executable).parent / "accord"


def accord(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACCORD), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


@pytest.fixture(scope="module", autouse=True)
def _console_script() -> None:
    if not ACCORD.exists():
        pytest.fail(f"{ACCORD} is missing: install the project (pip install -e .)")


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = accord("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"accord {version('accord')}\n"
    assert result.stdout.split()[1].count(".") == 2


def test_lint_good_files() -> None:
    result = accord(
        "contract", "lint", "examples/contracts/charge-card.yaml", "examples/contracts/order-paid.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ok examples/contracts/charge-card.yaml (payments/charge-card@1.2.0)",
        "ok examples/contracts/order-paid.yaml (payments/order-paid@1.0.0)",
    ]


def test_lint_bad_file_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "contract: payments/charge\nversion: 1.0.0\ninput: {}\noutput: {}\ntimeout: 2 minutes\nretires: {}\n"
    )
    result = accord("contract", "lint", bad, CONTRACTS / "charge-card.yaml")
    assert result.returncode == 2
    assert f"ok {CONTRACTS / 'charge-card.yaml'} (payments/charge-card@1.2.0)" in result.stdout
    assert result.stderr.splitlines() == [
        f"error: {bad}:5: timeout: '2 minutes' is not valid: expected a duration such as 30s, 2m, 1h, 500ms or 1m30s",
        f"error: {bad}:6: retires: unknown key 'retires' at the top level; did you mean 'retry'?",
    ]
    assert "Traceback" not in result.stderr


def test_lint_malformed_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("contract: a/b\nversion: [1.0.0\n")
    result = accord("contract", "lint", bad)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}:3: malformed YAML: ")


def test_lint_missing_file() -> None:
    result = accord("contract", "lint", "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: nope.yaml: cannot read the file: No such file or directory"


def test_lint_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("contract: a/b\nversion: 1\ninput: {}\noutput: {}\n")
    result = accord("contract", "lint", "--json", bad, CONTRACTS / "reserve-stock.yaml")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report[0]["ok"] is False
    assert report[0]["problems"] == [
        {
            "file": str(bad),
            "line": 2,
            "field": "version",
            "message": "expected a semantic version MAJOR.MINOR.PATCH such as 1.2.0, got number 1",
        }
    ]
    assert report[1] == {
        "file": str(CONTRACTS / "reserve-stock.yaml"),
        "ok": True,
        "contract": "warehouse/reserve-stock@2.0.0",
        "problems": [],
    }


def test_diff_breaking_inside_a_major_exits_1() -> None:
    result = accord(
        "contract", "diff", CONTRACTS / "charge-card.yaml", CONTRACTS / "breaking" / "charge-card-1.3.0.yaml"
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "BREAKING /input/required: input field 'card_token' is now required" in lines
    assert any(line.startswith("BREAKING /output/") and "payment_ref" in line for line in lines)
    assert "publish it as 2.0.0" in result.stderr


def test_diff_json() -> None:
    result = accord(
        "contract",
        "diff",
        "--json",
        CONTRACTS / "charge-card.yaml",
        CONTRACTS / "breaking" / "charge-card-1.3.0.yaml",
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["old"], report["new"], report["same_major"], report["breaking"]) == (
        "payments/charge-card@1.2.0",
        "payments/charge-card@1.3.0",
        True,
        True,
    )
    assert {
        "pointer": "/input/required",
        "message": "input field 'card_token' is now required",
        "breaking": True,
    } in report["findings"]


def test_diff_compatible_exits_0(tmp_path: Path) -> None:
    newer = tmp_path / "charge-1.3.0.yaml"
    text = (CONTRACTS / "charge-card.yaml").read_text().replace("version: 1.2.0", "version: 1.3.0")
    newer.write_text(
        text.replace("amount_cents: {type: integer, minimum: 1}", "amount_cents: {type: integer}")
    )
    result = accord("contract", "diff", CONTRACTS / "charge-card.yaml", newer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(
        "ok payments/charge-card@1.3.0 is compatible with payments/charge-card@1.2.0"
    )


def test_diff_across_majors_is_a_note(tmp_path: Path) -> None:
    major = tmp_path / "charge-2.yaml"
    major.write_text(
        (CONTRACTS / "breaking" / "charge-card-1.3.0.yaml")
        .read_text()
        .replace("version: 1.3.0", "version: 2.0.0")
    )
    result = accord("contract", "diff", CONTRACTS / "charge-card.yaml", major)
    assert result.returncode == 0
    assert result.stdout.startswith("note: payments/charge-card@2.0.0 is a different major version")


def test_diff_of_different_contracts_is_bad_input() -> None:
    result = accord("contract", "diff", CONTRACTS / "charge-card.yaml", CONTRACTS / "reserve-stock.yaml")
    assert result.returncode == 2
    assert "diff compares two versions of the same contract" in result.stderr


def test_workflow_check_examples() -> None:
    for name in ("order-to-cash.yaml", "restock-fan-out.yaml"):
        result = accord("workflow", "check", EXAMPLES / "workflows" / name, "--contracts", CONTRACTS)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"ok {EXAMPLES / 'workflows' / name} (")
        # the breaking successor in examples/contracts/breaking is left out, as a registry would
        assert "warning: ignoring" in result.stderr and "charge-card-1.3.0.yaml" in result.stderr


def test_workflow_check_json() -> None:
    result = accord(
        "workflow",
        "check",
        "--json",
        "examples/workflows/order-to-cash.yaml",
        "--contracts",
        "examples/contracts",
    )
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["order"] == ["charge", "reserve", "ship", "notify"]
    assert report["pinned"]["charge"] == "payments/charge-card@1.2.0"
    assert {"step": "ship", "target": "steps.ship.input.payment_ref", "from_step": "charge",
            "contract": "payments/charge-card", "version": "1.2.0", "major": 1,
            "field": "output.payment_ref"} in report["reads"]  # fmt: skip
    assert [f["line"] for f in report["findings"]] == [10]
    assert report["findings"][0]["breaking"] is False


def test_workflow_check_failure_exits_2_with_lines(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yaml"
    text = (EXAMPLES / "workflows" / "order-to-cash.yaml").read_text()
    workflow.write_text(
        text.replace("output.payment_ref}", "output.payment_reff}").replace(
            "reserve-stock@^2", "reserve-stock@^1"
        )
    )
    result = accord("workflow", "check", workflow, "--contracts", CONTRACTS)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {workflow}:12: step 'reserve', contract (line 12): step 'reserve' calls warehouse/reserve-stock@^1 "
        "but no registered version matches ^1 (registered: 2.0.0)",
        f"error: {workflow}:18: step 'ship', input.payment_ref (line 18): reads ${{steps.charge.output.payment_reff}}, "
        "but payments/charge-card@1.2.0's output does not declare 'payment_reff' in steps.charge.output; "
        "did you mean 'payment_ref'?",
    ]
    assert "Traceback" not in result.stderr


def test_workflow_check_bad_contract_dir(tmp_path: Path) -> None:
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, contracts)
    (contracts / "broken.yaml").write_text("contract: a/b\nversion: 1.0.0\ninput: {}\n")
    result = accord(
        "workflow", "check", EXAMPLES / "workflows" / "order-to-cash.yaml", "--contracts", contracts
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {contracts / 'broken.yaml'}:1: output: missing required key 'output' at the top level"
    )


def test_workflow_check_bad_workflow_file(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yaml"
    workflow.write_text("workflow: shipping/w\nsteps:\n  a:\n    contract: payments/charge-card@>=1\n")
    result = accord("workflow", "check", workflow, "--contracts", CONTRACTS)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {workflow}:4: steps.a.contract: range '>=1' has no upper bound")


def test_help_texts() -> None:
    result = accord("workflow", "check", "--help")
    assert result.returncode == 0
    assert "--contracts" in result.stdout and "Type-check a workflow offline" in result.stdout
    result = accord("contract", "--help")
    assert "lint" in result.stdout and "diff" in result.stdout
