"""Graphs the UI draws: a workflow's step graph (with a run's states) and the team graph.

Dependencies between steps come from their ``${steps.X...}`` references (DESIGN.md), so they are
read from the workflow's resolved definition when it lists them and from its source otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

JSONDict = dict[str, Any]

_STEP_REF = re.compile(r"steps\.([A-Za-z0-9_\-]+)")
_DEP_KEYS = ("depends_on", "dependencies", "needs", "after")

# When several step items (for_each) share one node, the node shows the most telling state.
_STATUS_RANK = ["failed", "running", "scheduled", "cancelled", "pending", "succeeded", "skipped"]


def workflow_steps(workflow: JSONDict) -> list[JSONDict]:
    """``[{"id", "contract", "version_range", "depends_on", "for_each", "when"}]`` in file order."""
    definition = workflow.get("definition") or {}
    steps = definition.get("steps") if isinstance(definition, dict) else None
    if not steps:
        try:
            source = yaml.safe_load(workflow.get("source_text") or "") or {}
        except yaml.YAMLError:
            source = {}
        steps = source.get("steps") if isinstance(source, dict) else None
    if isinstance(steps, dict):
        items = [
            dict(spec, id=spec_id) if isinstance(spec, dict) else {"id": spec_id}
            for spec_id, spec in steps.items()
        ]
    elif isinstance(steps, list):
        items = [dict(s) for s in steps if isinstance(s, dict) and s.get("id")]
    else:
        items = []
    ids = {str(s["id"]) for s in items}
    # The registry's resolved definition lists dependencies for all steps at the top level.
    resolved = definition.get("dependencies") if isinstance(definition, dict) else None
    out: list[JSONDict] = []
    for spec in items:
        step_id = str(spec["id"])
        deps: list[str] = []
        if isinstance(resolved, dict):
            deps.extend(str(v) for v in resolved.get(step_id, []))
        for key in _DEP_KEYS:
            value = spec.get(key)
            if isinstance(value, list):
                deps.extend(str(v) for v in value)
        if not deps and not isinstance(resolved, dict):
            text = repr({k: spec.get(k) for k in ("input", "when", "for_each")})
            deps = _STEP_REF.findall(text)
        contract = str(spec.get("contract") or "")
        version_range = str(spec.get("version_range") or spec.get("range") or spec.get("version") or "")
        if "@" in contract:
            contract, version_range = contract.split("@", 1)
        out.append(
            {
                "id": step_id,
                "contract": contract,
                "version_range": version_range,
                "team": contract.split("/", 1)[0] if "/" in contract else "",
                "depends_on": sorted({d for d in deps if d in ids and d != step_id}),
                "for_each": bool(spec.get("for_each")),
                "when": bool(spec.get("when")),
            }
        )
    return out


def spec_of(step_id: str) -> str:
    """``notify[3]`` -> ``notify``."""
    return step_id.split("[", 1)[0]


def step_graph(workflow: JSONDict | None, run_steps: list[JSONDict]) -> JSONDict:
    """Nodes (one per workflow step, for_each items folded in) with layer/order for drawing,
    and edges from dependencies. Without the workflow (not visible), nodes come from the run."""
    specs = workflow_steps(workflow) if workflow else []
    if not specs:
        seen: dict[str, JSONDict] = {}
        for step in run_steps:
            sid = spec_of(step["id"])
            seen.setdefault(
                sid,
                {
                    "id": sid,
                    "contract": step.get("contract", ""),
                    "version_range": "",
                    "team": step.get("team", ""),
                    "depends_on": [],
                    "for_each": "[" in step["id"],
                    "when": False,
                },
            )
        specs = list(seen.values())

    items: dict[str, list[JSONDict]] = {}
    for step in run_steps:
        items.setdefault(spec_of(step["id"]), []).append(step)

    layer: dict[str, int] = {}

    def depth(sid: str, trail: frozenset[str]) -> int:
        if sid in layer:
            return layer[sid]
        spec = by_id.get(sid)
        deps = [d for d in (spec["depends_on"] if spec else []) if d not in trail]
        layer[sid] = 1 + max((depth(d, trail | {sid}) for d in deps), default=-1)
        return layer[sid]

    by_id = {s["id"]: s for s in specs}
    for spec in specs:
        depth(spec["id"], frozenset())

    nodes: list[JSONDict] = []
    order_in_layer: dict[int, int] = {}
    for spec in specs:
        run_items = items.get(spec["id"], [])
        statuses = [s["status"] for s in run_items]
        status = _aggregate(statuses) if statuses else "pending"
        first = run_items[0] if run_items else {}
        lay = layer[spec["id"]]
        nodes.append(
            {
                "id": spec["id"],
                "contract": spec["contract"] or first.get("contract", ""),
                "contract_version": first.get("contract_version", ""),
                "version_range": spec["version_range"],
                "team": spec["team"] or first.get("team", ""),
                "status": status,
                "items": len(run_items),
                "item_statuses": _count(statuses),
                "step_ids": [s["id"] for s in run_items],
                "for_each": spec["for_each"],
                "when": spec["when"],
                "layer": lay,
                "order": order_in_layer.get(lay, 0),
            }
        )
        order_in_layer[lay] = order_in_layer.get(lay, 0) + 1
    edges = [{"from": dep, "to": spec["id"]} for spec in specs for dep in spec["depends_on"]]
    return {"nodes": nodes, "edges": edges, "layers": (max(layer.values()) + 1) if layer else 0}


def _aggregate(statuses: list[str]) -> str:
    for status in _STATUS_RANK:
        if status in statuses:
            return status
    return statuses[0]


def _count(statuses: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in statuses:
        out[status] = out.get(status, 0) + 1
    return out


def team_graph(teams: Iterable[str], workflows: Iterable[JSONDict]) -> JSONDict:
    """Which teams' workflows call which teams' contracts.

    ``{"teams": [{"name", "workflows", "contracts_called"}], "edges": [{"from", "to", "workflows",
    "contracts"}]}``; an edge goes from the workflow's team to the contract's team."""
    names = set(teams)
    edges: dict[tuple[str, str], JSONDict] = {}
    owned: dict[str, int] = {}
    for workflow in workflows:
        caller = workflow.get("team") or workflow["name"].split("/", 1)[0]
        names.add(caller)
        owned[caller] = owned.get(caller, 0) + 1
        for spec in workflow_steps(workflow):
            callee = spec["team"]
            if not callee:
                continue
            names.add(callee)
            edge = edges.setdefault(
                (caller, callee), {"from": caller, "to": callee, "workflows": [], "contracts": []}
            )
            if workflow["name"] not in edge["workflows"]:
                edge["workflows"].append(workflow["name"])
            if spec["contract"] not in edge["contracts"]:
                edge["contracts"].append(spec["contract"])
    for edge in edges.values():
        edge["workflows"].sort()
        edge["contracts"].sort()
    return {
        "teams": [{"name": n, "workflows": owned.get(n, 0)} for n in sorted(names)],
        "edges": sorted(edges.values(), key=lambda e: (e["from"], e["to"])),
    }
