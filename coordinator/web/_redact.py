"""Display redaction: the UI never shows a contract's ``sensitive`` fields, whoever looks.

The coordinator's API already hides other teams' payloads and redacts sensitive fields for
viewers of other teams; the UI additionally masks them for the owning team and the admin (a
screen is easily shared at 3 a.m.). Values of masked fields are also masked where they reappear
in the run's own input/output (a workflow input mapped into a sensitive step field). The masking
itself is ``coordinator.redaction``'s, as in the API.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from coordinator.redaction import redact_flows, redact_paths, redact_step_input, scrub_values

_INPUT_REF = re.compile(r"^\$\{input\.([A-Za-z0-9_.\-]+)\}$")

JSONDict = dict[str, Any]


def run_input_paths(workflow: JSONDict | None, sensitive_by_step: dict[str, list[str]]) -> list[str]:
    """Paths of the run input ("input.card_token") that the workflow maps verbatim into a
    sensitive step input field (``card_token: "${input.card_token}"``)."""
    if not workflow:
        return []
    try:
        source = yaml.safe_load(workflow.get("source_text") or "") or {}
    except yaml.YAMLError:
        return []
    steps = source.get("steps") if isinstance(source, dict) else None
    if not isinstance(steps, dict):
        return []
    out: list[str] = []
    for step_id, paths in sensitive_by_step.items():
        spec = steps.get(step_id.split("[", 1)[0])
        template = spec.get("input") if isinstance(spec, dict) else None
        for path in paths:
            side, _, rest = path.partition(".")
            if side != "input" or not rest:
                continue
            node: Any = template
            for part in rest.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            match = _INPUT_REF.match(node) if isinstance(node, str) else None
            if match:
                out.append(f"input.{match.group(1)}")
    return sorted(set(out))


def redact_run(
    run: JSONDict, sensitive_by_ref: dict[str, list[str]], workflow: JSONDict | None = None
) -> JSONDict:
    """Mask the sensitive fields of every step's payloads, and their values in the run's."""
    secrets: set[str] = set()
    by_step = {
        s["id"]: sensitive_by_ref.get(f"{s['contract']}@{s['contract_version']}", [])
        for s in run.get("steps", [])
    }
    mapped = run_input_paths(workflow, by_step)
    # Where sensitive values flow (taint): masked here for every viewer, like the fields
    # themselves. The run's own flows (for the versions it pinned and the event that started
    # it), joined with the workflow version's stored ones.
    definition = (workflow or {}).get("definition")
    stored = definition.get("sensitive_flows") or [] if isinstance(definition, dict) else []
    flows = sorted({*stored, *(run.get("sensitive_flows") or [])})
    run["input"] = redact_flows(
        redact_paths(run.get("input"), "input", mapped, secrets), "input", flows, secrets
    )
    run["output"] = redact_flows(run.get("output"), "output", flows, secrets)
    for step in run.get("steps", []):
        paths = sensitive_by_ref.get(f"{step['contract']}@{step['contract_version']}", [])
        step["sensitive"] = paths
        step["input"] = redact_step_input(
            str(step["id"]), redact_paths(step.get("input"), "input", paths, secrets), flows, secrets
        )
        step["output"] = redact_paths(step.get("output"), "output", paths, secrets)
    for step in run.get("steps", []):
        step["input"] = scrub_values(step.get("input"), secrets)
        step["output"] = scrub_values(step.get("output"), secrets)
    run["input"] = scrub_values(run.get("input"), secrets)
    run["output"] = scrub_values(run.get("output"), secrets)
    return run
