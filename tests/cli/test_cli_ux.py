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

ACCORD = Path(sys.executable).parent / "accord"


def accord(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACCORD_HOME": str(home)}
    env.pop("ACCORD_TOKEN", None)
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
