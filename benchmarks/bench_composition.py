"""Benchmark: type-checking a 100-step workflow against its contracts.

Registration runs the composition check synchronously on every ``accord workflow register``, so it
must stay well under the 100 ms target even for large workflows. The workflow here is a chain
(each step reads the previous step's output) plus a fan-in (the last step reads every other
step's output) plus a few ``for_each`` steps, against generated contracts whose schemas use
``$ref``/``$defs``, nested objects and arrays.

Run: ``.venv/bin/python -m benchmarks.bench_composition`` (writes benchmarks/results/composition.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from contracts.composition import ContractCatalog, check_workflow
from contracts.loader import parse_workflow_text
from contracts.model import Contract, Workflow

TARGET_MS = 100.0
RESULTS = Path(__file__).resolve().parent / "results" / "composition.json"


def make_contract(index: int, fan_in: int) -> Contract:
    """A contract with a structured input and output (objects, arrays, a $ref'd item type)."""
    input_schema: dict[str, Any] = {
        "type": "object",
        "required": ["order_id", "previous"],
        "additionalProperties": False,
        "properties": {
            "order_id": {"type": "string"},
            "previous": {"type": "string"},
            "count": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
            "sku": {"type": "string"},
            "note": {"type": "string"},
            **{f"in_{k}": {"type": "string"} for k in range(fan_in)},
        },
        "$defs": {
            "item": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            }
        },
    }
    output_schema: dict[str, Any] = {
        "type": "object",
        "required": ["value", "count", "items"],
        "properties": {
            "value": {"type": "string", "minLength": 1},
            "count": {"type": "integer", "minimum": 0},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
            "meta": {"type": "object", "properties": {"region": {"type": "string"}}},
        },
        "$defs": {
            "item": {
                "type": "object",
                "required": ["sku", "quantity"],
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            }
        },
    }
    return Contract(f"team{index % 10}/step-{index}", "1.0.0", input_schema, output_schema)


def make_workflow(steps: int) -> tuple[Workflow, list[Contract]]:
    """A chain of ``steps`` steps plus a fan-in of every step into the last one."""
    fan_in = steps - 1
    contracts = [make_contract(i, fan_in if i == steps - 1 else 0) for i in range(steps)]
    lines = [
        "workflow: bench/chain",
        "input:",
        "  type: object",
        "  required: [order_id]",
        "  properties: {order_id: {type: string}}",
        "steps:",
    ]

    def out(k: int) -> str:
        # a for_each step's output is the array of its per-item outputs
        return f"steps.s{k}.output[0]" if k > 0 and k % 10 == 0 else f"steps.s{k}.output"

    for i in range(steps):
        lines.append(f"  s{i}:")
        lines.append(f"    contract: {contracts[i].name}@^1")
        previous = '"${input.order_id}"' if i == 0 else f'"${{{out(i - 1)}.value}}"'
        lines.append("    input:")
        lines.append('      order_id: "${input.order_id}"')
        lines.append(f"      previous: {previous}")
        if i > 0:
            lines.append(f'      count: "${{{out(i - 1)}.count}}"')
            lines.append(f'      items: "${{{out(i - 1)}.items}}"')
            lines.append(f'      note: "after ${{{out(i - 1)}.value}}"')
        if i > 0 and i % 10 == 0:
            lines.append('      sku: "${item.sku}"')
            lines.append(f'    for_each: "${{{out(i - 1)}.items}}"')
            lines.append("    concurrency: 4")
        if i == steps - 1:
            for k in range(fan_in):
                lines.append(f'      in_{k}: "${{{out(k)}.value}}"')
    lines.append("output:")
    lines.append(f'  last: "${{steps.s{steps - 1}.output.value}}"')
    return parse_workflow_text("\n".join(lines) + "\n", "bench.yaml"), contracts


def run(steps: int = 100, repeat: int = 50) -> dict[str, Any]:
    workflow, contracts = make_workflow(steps)
    catalog = ContractCatalog(contracts)
    started = time.perf_counter()
    first = check_workflow(workflow, catalog)
    cold_ms = (time.perf_counter() - started) * 1000
    if not first.ok:
        raise SystemExit(
            "benchmark workflow does not type-check:\n" + "\n".join(f.message for f in first.findings)
        )
    samples: list[float] = []
    cpu_samples: list[float] = []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.thread_time()
        check_workflow(workflow, catalog)
        cpu_samples.append((time.thread_time() - cpu_started) * 1000)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    cpu_samples.sort()
    p99_index = min(len(samples) - 1, max(0, round(0.99 * len(samples)) - 1))
    mean = statistics.fmean(samples)
    return {
        "benchmark": "composition_check",
        "steps": steps,
        "references": sum(len(r) for r in first.reads.values()),
        "repeat": repeat,
        "cold_ms": round(cold_ms, 3),
        "mean_ms": round(mean, 3),
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[p99_index], 3),
        "target_ms": TARGET_MS,
        "p99_to_target": round(samples[p99_index] / TARGET_MS, 4),
        # CPU time of the checking thread: what the check costs, without a loaded machine's waits
        "cpu_mean_ms": round(statistics.fmean(cpu_samples), 3),
        "cpu_p50_ms": round(statistics.median(cpu_samples), 3),
        "cpu_p99_ms": round(cpu_samples[p99_index], 3),
        "cpu_p99_to_target": round(cpu_samples[p99_index] / TARGET_MS, 4),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a summary, write benchmarks/results/composition.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.steps, args.repeat)
    print(
        f"composition check, {result['steps']} steps, {result['references']} reads: "
        f"mean {result['mean_ms']:.1f} ms, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
        f"(cold {result['cold_ms']:.1f} ms); p99 is {result['p99_to_target']:.2f}x the {TARGET_MS:.0f} ms target"
    )
    print(
        f"CPU time: mean {result['cpu_mean_ms']:.1f} ms, p50 {result['cpu_p50_ms']:.1f} ms, "
        f"p99 {result['cpu_p99_ms']:.1f} ms ({result['cpu_p99_to_target']:.2f}x the target; "
        f"load average {result['load_average_1m']} on {result['cpus']} CPUs)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    # judged on CPU time: wall time on a shared, loaded machine measures the neighbours
    return 0 if result["cpu_p99_ms"] <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
