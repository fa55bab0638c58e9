"""The CLI's messages and exit codes on bad input, run as a user runs them (the real console
script): one clear line on stderr, the exit code docs/troubleshooting.md promises, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.coordinator import FLAG_VARIABLES, coordinator_env

ACCORD = Path(sys.executable).parent / "accord"


def accord(
    *args: str, home: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = coordinator_env(home, **(env or {}))
    return subprocess.run(
        [str(ACCORD), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _assert_usage_error(result: subprocess.CompletedProcess[str], home: Path, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    # Nothing was started: no coordinator.json (nor a database or token) left behind.
    assert not (home / "coordinator.json").exists()
    assert not (home / "coordinator.db").exists()


def test_start_on_a_busy_port_says_so(tmp_path: Path, busy_port: int) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", "--listen", f"127.0.0.1:{busy_port}", "--ui", "off", home=home)
    _assert_usage_error(
        result,
        home,
        f"cannot listen on 127.0.0.1:{busy_port}: the address is in use",
        "choose --listen HOST:PORT",
    )


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", ":7440", "127.0.0.1:http"])
def test_start_with_a_malformed_listen_address(tmp_path: Path, listen: str) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", "--listen", listen, "--ui", "off", home=home)
    _assert_usage_error(result, home, f"--listen '{listen}': expected HOST:PORT")


def test_start_with_a_malformed_ui_address(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", "--listen", "127.0.0.1:0", "--ui", "nonsense", home=home)
    _assert_usage_error(result, home, "--ui 'nonsense': expected HOST:PORT")


def test_start_on_an_unknown_host(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", "--listen", "no-such-host.invalid:7440", "--ui", "off", home=home)
    _assert_usage_error(result, home, "cannot listen on no-such-host.invalid:7440: unknown host")


def test_start_with_both_store_and_db(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = accord(
        "coordinator", "start", "--store", "sqlite:///tmp/a.db", "--db", str(tmp_path / "b.db"), home=home
    )
    _assert_usage_error(
        result,
        home,
        "--store and --db both name the database: give one (--db PATH is short for --store sqlite:///PATH)",
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "mysql://root:hunter2@db:3306/accord",
            "--store 'mysql://root:***@db:3306/accord': unknown scheme 'mysql'",
        ),
        ("/var/lib/accord.db", "--store '/var/lib/accord.db': not a URL"),
    ],
)
def test_start_with_a_store_of_an_unknown_kind_names_the_schemes(
    tmp_path: Path, url: str, shown: str
) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", "--store", url, "--ui", "off", home=home)
    _assert_usage_error(
        result,
        home,
        shown,
        "use postgresql://USER@HOST:PORT/DB or sqlite:///PATH (schemes: postgresql, postgres, sqlite)",
    )
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("soon", "--store-retry: 'soon' is not a duration"),
        ("0s", "--store-retry '0s': give a duration above 0"),
    ],
)
def test_start_with_a_store_retry_that_is_not_a_duration_is_refused(
    tmp_path: Path, value: str, shown: str
) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", "--store-retry", value, "--ui", "off", home=home)
    _assert_usage_error(result, home, shown)


def test_every_start_flag_has_an_environment_variable_of_its_name_shown_in_help(tmp_path: Path) -> None:
    from typer.main import get_command

    from coordinator.cli._apps import app

    start = get_command(app).commands["coordinator"].commands["start"]  # type: ignore[attr-defined]
    flags = [p for p in start.params if p.name != "help" and getattr(p, "opts", None)]
    variables = {p.opts[0]: p.envvar for p in flags}
    assert variables == {opt: "ACCORD_" + opt[2:].upper().replace("-", "_") for opt in variables}
    assert {"--listen", "--store", "--db", "--store-pool", "--ui", "--log-level"} <= variables.keys()
    # The test harness clears exactly these for its coordinators: it must know every one.
    assert set(variables.values()) == set(FLAG_VARIABLES)
    text = subprocess.run(
        [str(ACCORD), "coordinator", "start", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "ACCORD_HOME": str(tmp_path)},
        check=True,
    ).stdout
    for variable in variables.values():
        assert f"[env var: {variable}]" in text, (variable, text)


def test_a_flag_comes_from_its_environment_variable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = accord("coordinator", "start", home=home, env={"ACCORD_LISTEN": "nonsense", "ACCORD_UI": "off"})
    _assert_usage_error(result, home, "--listen 'nonsense': expected HOST:PORT")
    both = accord(
        "coordinator",
        "start",
        home=home,
        env={"ACCORD_STORE": "sqlite:///tmp/a.db", "ACCORD_DB": "/tmp/b.db"},
    )
    _assert_usage_error(both, home, "ACCORD_STORE and ACCORD_DB both name the database: give one")


def test_a_flag_on_the_command_line_wins_over_its_environment_variable(
    tmp_path: Path, busy_port: int
) -> None:
    home = tmp_path / "home"
    result = accord(
        "coordinator",
        "start",
        "--listen",
        f"127.0.0.1:{busy_port}",
        home=home,
        env={"ACCORD_LISTEN": "nonsense", "ACCORD_UI": "off", "ACCORD_STORE": "mysql://nowhere"},
    )
    # Not the variable's "nonsense"; and --store came from its variable only, so checked (first).
    assert "unknown scheme 'mysql'" in result.stderr, result.stderr
    result = accord(
        "coordinator",
        "start",
        "--listen",
        f"127.0.0.1:{busy_port}",
        "--db",
        str(tmp_path / "flag.db"),
        home=home,
        env={"ACCORD_LISTEN": "nonsense", "ACCORD_UI": "off", "ACCORD_STORE": "mysql://nowhere"},
    )
    # --db on the command line wins over ACCORD_STORE, --listen over ACCORD_LISTEN.
    _assert_usage_error(result, home, f"cannot listen on 127.0.0.1:{busy_port}: the address is in use")


HELP_PAGES = [
    ("--help",),
    ("run", "--help"),
    ("contract", "--help"),
    ("contract", "lint", "--help"),
    ("contract", "diff", "--help"),
    ("contract", "register", "--help"),
    ("workflow", "validate", "--help"),
    ("runs", "list", "--help"),
    ("runs", "show", "--help"),
    ("runs", "trace", "--help"),
    ("team", "--help"),
    ("team", "list", "--help"),
    ("team", "rotate-token", "--help"),
    ("team", "token", "create", "--help"),
    ("team", "token", "list", "--help"),
    ("team", "token", "revoke", "--help"),
    ("admin", "rotate-token", "--help"),
    ("coordinator", "start", "--help"),
    ("agent", "start", "--help"),
]


@pytest.mark.parametrize("args", HELP_PAGES, ids=lambda args: " ".join(args))
def test_help_shows_flags_as_flags_and_arguments_in_capitals(tmp_path: Path, args: tuple[str, ...]) -> None:
    env_home = tmp_path / "home"
    result = subprocess.run(
        [str(ACCORD), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ACCORD_HOME": str(env_home), "COLUMNS": "120"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "<bool>" not in text, text  # a flag takes no value
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage  # "{file}" reads as a set of choices
    assert "<list[" not in text, text


def test_help_usage_lines() -> None:
    def usage(*args: str) -> str:
        out = subprocess.run(
            [str(ACCORD), *args, "--help"], capture_output=True, text=True, check=True
        ).stdout
        return next(line.strip() for line in out.splitlines() if "Usage:" in line)

    assert usage("run") == "Usage: accord run [OPTIONS] WORKFLOW"
    assert usage("contract", "lint") == "Usage: accord contract lint [OPTIONS] FILES..."
    assert usage("contract", "diff") == "Usage: accord contract diff [OPTIONS] OLD NEW"
    team = subprocess.run([str(ACCORD), "team", "--help"], capture_output=True, text=True, check=True).stdout
    assert "(admin)" in team and "list (any team)" in team
    assert usage("team", "rotate-token") == "Usage: accord team rotate-token [OPTIONS] TEAM"
    assert usage("team", "token", "create") == "Usage: accord team token create [OPTIONS] NAME"
    assert usage("team", "token", "revoke") == "Usage: accord team token revoke [OPTIONS] NAME"


def test_a_group_lists_each_command_on_flowing_lines() -> None:
    """A command's summary in its group's list is its help's first paragraph, flowed to the
    terminal's width like the command's own help: not broken where the docstring's lines end."""
    text = subprocess.run(
        [str(ACCORD), "runs", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=True,
    ).stdout
    (approve,) = [line for line in text.splitlines() if line.lstrip("│ ").startswith("approve ")]
    # The docstring breaks its first line after "its output is"; at 200 columns it all fits.
    assert "its output is {approved: true, by: YOUR_TEAM, comment}. Only the teams the step names" in approve
