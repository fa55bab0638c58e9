"""Imports point downwards only (docs/architecture.md, "Layers").

Every module of ``contracts``, ``coordinator`` and ``team_agent`` is parsed with ``ast``; each of
its imports (at module level, inside functions and under ``TYPE_CHECKING`` alike) must go to its
own package or to a lower layer. A failure names the module, the import and the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "coordinator", "team_agent")

# From the top down; a package may import only from the layers below its own (and itself).
# Packages in one layer may not import each other.
COORDINATOR_LAYERS: list[tuple[str, ...]] = [
    ("coordinator.cli",),
    ("coordinator.demo",),
    ("coordinator.server", "coordinator.web"),
    ("coordinator.api", "coordinator.client"),
    ("coordinator.events",),
    ("coordinator.engine", "coordinator.registry"),
    ("coordinator.dispatch",),
    ("coordinator.telemetry",),
    ("coordinator.store",),
    ("coordinator.tokens", "coordinator.tls", "coordinator.checks"),
    ("coordinator.principal", "coordinator.redaction", "coordinator.config"),
]
# What each package outside the coordinator may import besides itself.
OTHERS: dict[str, tuple[str, ...]] = {
    "contracts": (),
    "team_agent": ("contracts",),
}


def _rank() -> dict[str, int]:
    return {area: depth for depth, layer in enumerate(COORDINATOR_LAYERS) for area in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_wire" not in path.parts:  # generated code
                yield _module_name(path), path


def _imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``path``, relative ones resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")
                parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            # ``from coordinator import tokens`` imports coordinator.tokens
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base in PACKAGES else base


def _area(module: str) -> str:
    """``coordinator.api.auth`` -> ``coordinator.api``; ``team_agent.x`` -> ``team_agent``."""
    parts = module.split(".")
    if parts[0] == "coordinator" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def _violation(module: str, imported: str) -> str | None:
    """The rule ``module`` breaks by importing ``imported``, or None."""
    source, target = _area(module), _area(imported)
    if target not in PACKAGES and not target.startswith("coordinator."):
        return None  # the standard library or a third-party package
    if source == target or (target == "coordinator" and source.startswith("coordinator.")):
        return None
    if source in OTHERS:
        if target in OTHERS[source]:
            return None
        allowed = ", ".join(OTHERS[source]) or "nothing of Accord's other packages"
        return f"{source} may import only {allowed}"
    if target == "contracts":
        return None
    if target in OTHERS:
        if source == "coordinator.cli":
            return None  # the command line starts agents too (accord agent start)
        return f"only the command line (coordinator.cli) imports {target}"
    rank = _rank()
    if source not in rank:
        return f"{source} is in no layer: add it to COORDINATOR_LAYERS (and docs/architecture.md)"
    if target not in rank:
        return f"{target} is in no layer: add it to COORDINATOR_LAYERS (and docs/architecture.md)"
    if rank[target] > rank[source]:
        return None
    if rank[target] == rank[source]:
        return f"{source} and {target} are in one layer and may not import each other"
    return f"{source} is below {target}: imports go down the layers (api → engine/registry → store)"


def _all_violations() -> list[str]:
    found = []
    for module, path in _modules():
        for line, imported in _imports(module, path):
            rule = _violation(module, imported)
            if rule is not None:
                where = path.relative_to(ROOT)
                found.append(f"{where}:{line}: {module} imports {imported}: {rule}")
    return found


def test_every_import_points_down_the_layers() -> None:
    violations = _all_violations()
    assert not violations, "upward imports (docs/architecture.md, Layers):\n" + "\n".join(violations)


def test_every_coordinator_package_has_a_layer() -> None:
    areas = {_area(module) for module, _ in _modules() if module.startswith("coordinator.")}
    assert sorted(areas - set(_rank())) == []


@pytest.mark.parametrize(
    ("module", "imported", "rule"),
    [
        (
            "coordinator.store.sqlite",
            "coordinator.telemetry.spans",
            "coordinator.store is below coordinator.telemetry",
        ),
        (
            "coordinator.telemetry.receiver",
            "coordinator.api.auth",
            "coordinator.telemetry is below coordinator.api",
        ),
        ("coordinator.telemetry.receiver", "coordinator.engine.spans", "is below coordinator.engine"),
        (
            "coordinator.registry.teams",
            "coordinator.api.auth",
            "coordinator.registry is below coordinator.api",
        ),
        ("coordinator.engine.engine", "coordinator.registry.registry", "are in one layer"),
        ("contracts.model", "coordinator.principal", "contracts may import only nothing"),
        ("team_agent.agent", "coordinator.client", "team_agent may import only contracts"),
        (
            "coordinator.api.convert",
            "team_agent.client",
            "only the command line (coordinator.cli) imports team_agent",
        ),
    ],
)
def test_the_rules_catch_an_upward_import(module: str, imported: str, rule: str) -> None:
    found = _violation(module, imported)
    assert found is not None and rule in found


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("coordinator.api.convert", "coordinator.engine"),
        ("coordinator.telemetry.scrub", "coordinator.redaction"),
        ("coordinator.store.records", "contracts.model"),
        ("coordinator.cli.run_cmd", "team_agent.main"),
        ("team_agent.client", "contracts.grpc_errors"),
        ("coordinator.web._graph", "yaml"),
    ],
)
def test_the_rules_let_a_downward_import_through(module: str, imported: str) -> None:
    assert _violation(module, imported) is None
