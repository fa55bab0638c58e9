"""Graphs the UI draws: a workflow's step graph (with a run's states) and the team graph.

Dependencies between steps come from their ``${steps.X...}`` references (docs/workflows.md,
"Dependencies between steps"): the registry stores them in the workflow's resolved definition,
worked out by ``contracts.model.Workflow.dependencies``, and the same function reads them from the
workflow's source when the definition has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from contracts.model import StepSpec, Workflow

JSONDict = dict[str, Any]

# When several step items (for_each) share one node, the node shows the most telling state.
_STATUS_RANK = [
    "failed",
    "running",
    "scheduled",
    "cancelled",
    "not started",
    "pending",
    "succeeded",
    "skipped",
]


def _source_steps(workflow: JSONDict) -> dict[str, Any]:
    """The ``steps:`` mapping of the workflow's source text ({} when it has none)."""
    try:
        source = yaml.safe_load(workflow.get("source_text") or "") or {}
    except yaml.YAMLError:
        return {}
    steps = source.get("steps") if isinstance(source, dict) else None
    return steps if isinstance(steps, dict) else {}


def _dependencies(steps: Mapping[str, Any]) -> dict[str, list[str]]:
    """``Workflow.dependencies`` of steps as written in a file (only their templates matter)."""
    specs = {
        str(step_id): StepSpec(
            id=str(step_id),
            contract="",
            version_range="",
            input=spec.get("input"),
            when=spec.get("when"),
            for_each=spec.get("for_each"),
        )
        for step_id, spec in steps.items()
        if isinstance(spec, dict)
    }
    return Workflow(name="", input_schema={}, steps=specs).dependencies()


def workflow_steps(workflow: JSONDict) -> list[JSONDict]:
    """``[{"id", "contract", "version_range", "team", "depends_on", "for_each", "when"}]`` in
    file order."""
    definition = workflow.get("definition")
    definition = definition if isinstance(definition, dict) else {}
    steps = definition.get("steps")
    if not isinstance(steps, dict) or not steps:
        steps = _source_steps(workflow)
    # The registry's resolved definition lists the dependencies of every step.
    dependencies = definition.get("dependencies")
    if not isinstance(dependencies, dict):
        dependencies = _dependencies(_source_steps(workflow) or steps)
    out: list[JSONDict] = []
    for spec_id, raw in steps.items():
        step_id = str(spec_id)
        spec = raw if isinstance(raw, dict) else {}
        deps = [str(d) for d in dependencies.get(step_id, [])]
        contract = str(spec.get("contract") or "")
        version_range = str(spec.get("range") or "")
        if "@" in contract:
            contract, version_range = contract.split("@", 1)
        out.append(
            {
                "id": step_id,
                "contract": contract,
                "version_range": version_range,
                "team": contract.split("/", 1)[0] if "/" in contract else "",
                "depends_on": sorted({d for d in deps if d in steps and d != step_id}),
                "for_each": bool(spec.get("for_each")),
                "when": bool(spec.get("when")),
                "wait_for": _waits_for(spec),
            }
        )
    return out


def _waits_for(spec: Mapping[str, Any]) -> str:
    """``approval by finance`` for a waiting step of the registry's definition, else ""."""
    kind = spec.get("wait_for")
    if not isinstance(kind, str) or not kind:
        return ""
    by = spec.get("by") if isinstance(spec.get("by"), list) else []
    return f"{kind} by {', '.join(str(t) for t in by)}" if by else kind


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
    # A for_each step's own record stands for its items until it has some; then the node is its
    # items (a for_each over 2 items is x2, not x3 with the parent counted).
    for sid, group in items.items():
        if any(s["id"] != sid for s in group):
            items[sid] = [s for s in group if s["id"] != sid]

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
        # The words shown ("not started" for a step its run ended before it began).
        states = [s.get("state") or s["status"] for s in run_items]
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
                "item_statuses": _count(states),
                "state": _aggregate(states) if states else "pending",
                "step_ids": [s["id"] for s in run_items],
                "for_each": spec["for_each"],
                "when": spec["when"],
                "wait_for": spec.get("wait_for", ""),
                # How many of its records reuse the output of the run a retry retries (``runs retry``).
                "reused": sum(1 for s in run_items if s.get("reused_from")),
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
    event_edges: dict[tuple[str, str], JSONDict] = {}
    for workflow in workflows:
        listener = workflow.get("team") or workflow["name"].split("/", 1)[0]
        for event in workflow_triggers(workflow):
            publisher = event.split("/", 1)[0]
            names.add(publisher)
            edge = event_edges.setdefault(
                (publisher, listener), {"from": publisher, "to": listener, "workflows": [], "events": []}
            )
            if workflow["name"] not in edge["workflows"]:
                edge["workflows"].append(workflow["name"])
            if event not in edge["events"]:
                edge["events"].append(event)
    for edge in event_edges.values():
        edge["workflows"].sort()
        edge["events"].sort()
    return {
        "teams": [{"name": n, "workflows": owned.get(n, 0)} for n in sorted(names)],
        "edges": sorted(edges.values(), key=lambda e: (e["from"], e["to"])),
        # A team's events start another team's workflows (their triggers): from the publisher.
        "event_edges": sorted(event_edges.values(), key=lambda e: (e["from"], e["to"])),
    }


def workflow_triggers(workflow: JSONDict) -> list[str]:
    """The event contracts (``team/name``) the workflow's ``triggers:`` start on: as the
    coordinator lists them, else (a workflow without that field) read from its source text."""
    listed = workflow.get("triggers")
    if isinstance(listed, list):
        return [str(t) for t in listed]
    try:
        source = yaml.safe_load(workflow.get("source_text") or "") or {}
    except yaml.YAMLError:
        return []
    triggers = source.get("triggers") if isinstance(source, dict) else None
    out: list[str] = []
    for trigger in triggers if isinstance(triggers, list) else []:
        # PyYAML reads a bare `on` key as the boolean True (YAML 1.1).
        on = (trigger.get("on") or trigger.get(True)) if isinstance(trigger, dict) else None
        if isinstance(on, str) and "/" in on:
            name = on.split("@", 1)[0].strip()
            if name not in out:
                out.append(name)
    return out
