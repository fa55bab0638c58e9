"""Compatibility check cost: one contract version against its successor, 200 fields each side.

Registering a contract runs ``check_contract_compat`` against every older version in the same
major, so the check sits on the registration path; the target is under 10 ms per check for a
large contract. The schemas here are built to be realistic and large: 200 top-level properties
per side (strings with bounds and patterns, integers, numbers, enums, nullable fields in both
spellings, arrays of objects, nested objects, ``$ref`` into ``$defs``), input and output. The
successor is compatible (input widens, output narrows), which is the expensive case: every
field is examined and nothing short-circuits.

Both wall-clock and CPU time are recorded per check. The check is pure CPU work in one thread,
so on a shared, oversubscribed machine (the load average is recorded too) wall time mostly
measures waiting for a CPU; the target is therefore judged on CPU time, and wall time is reported
beside it.

Run: ``python -m benchmarks.bench_compat [--iterations 300]`` → benchmarks/results/compat.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from contracts.compat import check_contract_compat

TARGET_MS = 10.0
FIELDS = 200
RESULTS = Path(__file__).resolve().parent / "results" / "compat.json"


def _field(i: int) -> dict[str, Any]:
    """Property number `i` of the old schema: cycles through the shapes contracts use."""
    kind = i % 10
    if kind == 0:
        return {"type": "string", "minLength": 1, "maxLength": 64, "description": f"field {i}"}
    if kind == 1:
        return {"type": "integer", "minimum": 0, "maximum": 10_000}
    if kind == 2:
        return {"type": "number", "exclusiveMinimum": 0}
    if kind == 3:
        return {"enum": ["pending", "paid", "failed", "refunded"]}
    if kind == 4:
        return {"type": ["string", "null"], "pattern": "^[A-Z]{3}$"}
    if kind == 5:
        return {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}
    if kind == 6:
        return {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            },
        }
    if kind == 7:
        return {
            "type": "object",
            "required": ["line1", "country"],
            "properties": {
                "line1": {"type": "string"},
                "line2": {"type": "string"},
                "zip": {"type": "string", "maxLength": 10},
                "country": {"$ref": "#/$defs/country"},
            },
            "additionalProperties": False,
        }
    if kind == 8:
        return {"$ref": "#/$defs/money"}
    return {"type": "boolean"}


def build_schemas(
    fields: int = FIELDS,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(old_input, old_output, new_input, new_output); the new pair is a compatible successor."""
    defs = {
        "country": {"type": "string", "enum": ["DE", "FR", "GB", "US"]},
        "money": {
            "type": "object",
            "required": ["amount_cents", "currency"],
            "properties": {
                "amount_cents": {"type": "integer", "minimum": 0},
                "currency": {"$ref": "#/$defs/country"},
            },
        },
    }
    props = {f"f{i:03d}": _field(i) for i in range(fields)}
    required = [name for i, name in enumerate(props) if i % 3 == 0]
    old_input: dict[str, Any] = {
        "type": "object",
        "$defs": defs,
        "required": required,
        "properties": props,
        "additionalProperties": False,
    }
    old_output = copy.deepcopy(old_input)

    # Input widens: fewer required fields, integer → number, looser bounds, more enum values,
    # nullable fields, new optional fields (allowed since the old input was closed).
    new_input = copy.deepcopy(old_input)
    new_input["required"] = required[::2]
    for i, (name, schema) in enumerate(new_input["properties"].items()):
        kind = i % 10
        if kind == 0:
            schema["maxLength"] = 128
        elif kind == 1:
            schema["type"] = "number"
            del schema["maximum"]
        elif kind == 3:
            schema["enum"] = [*schema["enum"], "disputed"]
        elif kind == 9:
            new_input["properties"][name] = {"type": ["boolean", "null"]}
    new_input["properties"]["f999"] = {"type": "string"}
    new_input["$defs"]["country"]["enum"] = ["DE", "FR", "GB", "US", "NL"]

    # Output narrows: more required fields, number → integer, tighter bounds, fewer enum values.
    new_output = copy.deepcopy(old_output)
    new_output["required"] = list(dict.fromkeys([*required, *list(props)[1::3]]))
    for i, (name, schema) in enumerate(new_output["properties"].items()):
        kind = i % 10
        if kind == 0:
            schema["maxLength"] = 32
        elif kind == 2:
            schema["type"] = "integer"
        elif kind == 3:
            schema["enum"] = ["pending", "paid"]
        elif kind == 5:
            new_output["properties"][name] = {"type": "integer", "minimum": 1}
    return old_input, old_output, new_input, new_output


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "mean_ms": round(statistics.fmean(samples), 3),
        "p50_ms": round(_percentile(samples, 0.50), 3),
        "p99_ms": round(_percentile(samples, 0.99), 3),
        "min_ms": round(min(samples), 3),
        "max_ms": round(max(samples), 3),
    }


def run(iterations: int = 300, fields: int = FIELDS) -> dict[str, Any]:
    """Time `iterations` checks; returns the result document (also written to RESULTS)."""
    old_in, old_out, new_in, new_out = build_schemas(fields)
    findings = check_contract_compat(old_in, old_out, new_in, new_out)
    if findings:
        # A finding here would mean the benchmark measures the wrong (short-circuiting) path.
        raise SystemExit(
            "benchmark schemas are not compatible: " + "; ".join(f.message for f in findings[:3])
        )
    for _ in range(10):  # warm-up: imports, validator caches, branch predictors
        check_contract_compat(old_in, old_out, new_in, new_out)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(iterations):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        check_contract_compat(old_in, old_out, new_in, new_out)
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start_wall) * 1000)
    cpu_p50 = _percentile(cpu, 0.50)
    return {
        "benchmark": "compat",
        "fields_per_schema": fields,
        "iterations": iterations,
        "cpu": _summary(cpu),
        "wall": _summary(wall),
        "target_ms": TARGET_MS,
        "cpu_p50_to_target": round(cpu_p50 / TARGET_MS, 3),
        "wall_p50_to_target": round(_percentile(wall, 0.50) / TARGET_MS, 3),
        "meets_target": cpu_p50 < TARGET_MS,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table and write benchmarks/results/compat.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--fields", type=int, default=FIELDS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.iterations, args.fields)
    print(
        f"check_contract_compat, {result['fields_per_schema']} fields per schema, {result['iterations']} runs"
    )
    print(f"{'':>6} {'mean':>10} {'p50':>10} {'p99':>10} {'p50/target':>11}")
    for clock in ("cpu", "wall"):
        row = result[clock]
        ratio = result[f"{clock}_p50_to_target"]
        print(
            f"{clock:>6} {row['mean_ms']:>8.3f}ms {row['p50_ms']:>8.3f}ms {row['p99_ms']:>8.3f}ms {ratio:>10.3f}x"
        )
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"target {TARGET_MS:.0f} ms per check (judged on CPU p50): {verdict}")
    print(f"load average {result['machine']['loadavg_1m']} on {result['machine']['cpus']} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
