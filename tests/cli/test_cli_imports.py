"""Start-up cost of the ``accord`` command: what loading the command tree may import.

Every command module is imported to build the Typer app, so anything one of them imports at
module level is paid by every command, ``accord --help`` included. Heavy libraries are imported
inside the commands that need them; these tests fail when one leaks back to module level.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Each costs tens of milliseconds or more to import, and most commands need none of them.
HEAVY = [
    "grpc",
    "google.protobuf",
    "opentelemetry",
    "jsonschema",
    "semantic_version",
    "yaml",
    "coordinator.client",
    "coordinator.server",
    "team_agent",
    "contracts.compat",
    "contracts.composition",
    "contracts.loader",
]


def _imported_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return [name for name in HEAVY if any(m == name or m.startswith(name + ".") for m in modules)]


def test_loading_the_command_tree_imports_nothing_heavy() -> None:
    assert _heavy(_imported_after("import coordinator.cli")) == []


def test_the_contracts_package_imports_its_modules_on_first_use() -> None:
    assert _heavy(_imported_after("import contracts, contracts.errors")) == []
    loaded = _imported_after("import contracts; contracts.parse_version('1.2.3')")
    assert "contracts.versions" in loaded and "contracts.compat" not in loaded
