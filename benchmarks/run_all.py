"""Run every benchmark (``make bench``) and print one combined table with the peers' ratios to Accord.

    python -m benchmarks.run_all [--quick] [--only hop,throughput,scale,replicas,versus,peers] [--seconds S]

``--quick`` shortens everything (hop 200 runs; throughput 10 s with 1 and 4 agents; scale to
10,000 stored runs, 10 s windows, 2,000 waiting runs; replicas 10 s windows, 1 round, 3
failovers; versus 2 rounds, 40 runs, 8 s windows; peers 20 runs / 10 s). ``versus`` measures
Accord (SQLite, PostgreSQL) and Temporal side by side in interleaved rounds; ``peers`` runs the
other peers (Prefect, Airflow) after it. Each benchmark
writes its own JSON into benchmarks/results/; this writes ``summary.json`` and rewrites
``README-table.md`` (the table the README's Performance section shows). A benchmark that is not
selected is taken from its last JSON (marked with its date); the peers (benchmarks/peers, set up
in their own venvs) are imported lazily and may be absent or fail without stopping the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from typing import Any

from benchmarks import _harness as h

ALL = ("hop", "throughput", "scale", "replicas", "versus", "peers")
# Temporal is measured beside Accord, in the same rounds, by bench_versus (its own table).
PEER_NAMES = ("prefect", "airflow")


def _load(name: str) -> dict[str, Any] | None:
    path = h.RESULTS / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    data["_from_file"] = True
    return data  # type: ignore[no-any-return]


def run_hop(quick: bool) -> dict[str, Any]:
    from benchmarks import bench_hop

    result = asyncio.run(bench_hop.bench(runs=200 if quick else 300, warmup=20 if quick else 30))
    print(bench_hop.format_result(result), flush=True)
    h.write_result("hop", result)
    return result


def run_throughput(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import bench_throughput

    counts = [1, 4] if quick else [1, 4, 16]
    window = seconds or (10.0 if quick else 60.0)
    result = asyncio.run(bench_throughput.bench(counts, seconds=window, warmup=3.0 if quick else 5.0))
    print(bench_throughput.format_result(result), flush=True)
    h.write_result("throughput", result)
    return result


def run_scale(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import bench_scale

    levels = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    window = seconds or (10.0 if quick else 30.0)
    result = asyncio.run(
        bench_scale.bench(
            levels,
            seconds=window,
            warmup=3.0 if quick else 5.0,
            waiting_runs=2_000 if quick else 10_000,
            size_runs=200 if quick else 500,
            steady_s=30.0 if quick else 60.0,
        )
    )
    print(bench_scale.format_result(result), flush=True)
    h.write_result("scale", result)
    return result


def run_replicas(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import bench_replicas

    result = asyncio.run(
        bench_replicas.bench(
            seconds=seconds or (10.0 if quick else 30.0),
            warmup=3.0 if quick else 5.0,
            rounds=1 if quick else 2,
            failovers=3 if quick else 5,
        )
    )
    print(bench_replicas.format_result(result), flush=True)
    h.write_result("replicas", result)
    return result


def run_versus(quick: bool, seconds: float | None) -> dict[str, Any]:
    from benchmarks import bench_versus

    settings = bench_versus.build_settings(quick, seconds=seconds)
    result = asyncio.run(bench_versus.bench(settings))
    print(bench_versus.format_result(result), flush=True)
    h.write_result("versus", result)
    return result


def run_peers(quick: bool) -> dict[str, Any]:
    """The peers' figures, or {"error": ...} when their driver is missing or fails."""
    try:
        from benchmarks.peers import run_peers
    except Exception as exc:  # another engineer's module: absent or broken must not stop us
        return {"error": f"benchmarks.peers.run_peers unavailable: {type(exc).__name__}: {exc}"}
    try:
        results = run_peers.run(PEER_NAMES, runs=20 if quick else 50, seconds=10.0 if quick else 20.0)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {"error": f"peers failed: {type(exc).__name__}: {exc}"}
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}


# ---------------------------------------------------------------- the combined table


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(value: Any, accord: Any) -> str:
    if value is None or not accord:
        return "-"
    ratio = value / accord
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def combined_rows(
    hop: dict[str, Any] | None, tput: dict[str, Any] | None, peers: dict[str, Any] | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    accord = {
        "system": "Accord",
        "p50_ms": hop["chain"]["p50_ms"] if hop else None,
        "p99_ms": hop["chain"]["p99_ms"] if hop else None,
        "steps_per_s": tput["best_steps_per_s"] if tput else None,
        "error": None,
    }
    rows.append(accord)
    peer_results = (peers or {}).get("results") or {}
    for name in PEER_NAMES:
        r = peer_results.get(name)
        if r is None:
            error = (peers or {}).get("error") or "not run"
            rows.append({"system": name, "p50_ms": None, "p99_ms": None, "steps_per_s": None, "error": error})
        else:
            rows.append(
                {
                    "system": name,
                    "p50_ms": r.get("p50_ms"),
                    "p99_ms": r.get("p99_ms"),
                    "steps_per_s": r.get("steps_per_s"),
                    "error": r.get("error"),
                }
            )
    for row in rows:
        row["p50_vs_accord"] = (
            row["p50_ms"] / accord["p50_ms"] if row["p50_ms"] and accord["p50_ms"] else None
        )
        row["steps_per_s_vs_accord"] = (
            row["steps_per_s"] / accord["steps_per_s"]
            if row["steps_per_s"] and accord["steps_per_s"]
            else None
        )
    return rows


def text_table(rows: list[dict[str, Any]]) -> str:
    out: list[tuple[Any, ...]] = [
        ("system", "chain p50 ms", "x Accord", "chain p99 ms", "steps/s", "x Accord", "status")
    ]
    accord = rows[0]
    for r in rows:
        status = "ok" if not r["error"] else "FAILED: " + str(r["error"]).splitlines()[0][:70]
        out.append(
            (
                r["system"],
                _num(r["p50_ms"], ".1f"),
                _ratio(r["p50_ms"], accord["p50_ms"]),
                _num(r["p99_ms"], ".1f"),
                _num(r["steps_per_s"], ".1f"),
                _ratio(r["steps_per_s"], accord["steps_per_s"]),
                status,
            )
        )
    return h.table(out)


def replicas_line(replicas: dict[str, Any]) -> str:
    """One sentence of the README table: the stores side by side, their ratios, failover."""
    median, ratios, failover, met = (
        replicas["median"],
        replicas["ratios"],
        replicas["failover"],
        replicas["met"],
    )

    def side(kind: str) -> str:
        m = median[kind]
        text = f"{_num(m['steps_per_s'], '.0f')}/s, {_num(m['coordinator_cpu_ms_per_step'], '.2f')} ms"
        if kind == "sqlite":
            return text
        r = ratios[f"{kind}_to_sqlite"]
        return (
            f"{text} ({_num(r['coordinator_cpu_per_step'], '.2f')}x; with the database's own CPU "
            f"{_num(m['coordinator_and_database_cpu_ms_per_step'], '.2f')} ms, "
            f"{_num(r['coordinator_and_database_cpu_per_step'], '.2f')}x)"
        )

    return (
        "Coordinators on PostgreSQL (steps/s and coordinator CPU per step, every coordinator's CPU "
        f"summed; ratios to SQLite in the same run): SQLite {side('sqlite')}; PostgreSQL, 1 coordinator "
        f"{side('pg1')}; 2 coordinators {side('pg2')}, "
        f"{_num(median['pg2']['missed_wakeups'], '.0f')} missed cross-coordinator wake-ups. Goal "
        f"≤ {replicas['targets']['pg1_cpu_per_step_ratio']}x: {'met' if met['cpu_per_step'] else 'missed'}. "
        "Failover (kill -9 of the coordinator the agents use → first step finished through the other, "
        f"{len(failover['repeats'])} times): median {_num(failover['median_s'], '.2f')} s, max "
        f"{_num(failover['max_s'], '.2f')} s (goal < {failover['target_s']:.0f} s: "
        f"{'met' if met['failover'] else 'missed'})."
    )


def markdown(
    rows: list[dict[str, Any]],
    hop: dict[str, Any] | None,
    tput: dict[str, Any] | None,
    scale: dict[str, Any] | None,
    peers: dict[str, Any] | None,
    replicas: dict[str, Any] | None = None,
    versus: dict[str, Any] | None = None,
) -> str:
    accord = rows[0]
    lines = [
        "<!-- written by `make bench` (benchmarks/run_all.py); do not edit by hand -->",
        "",
    ]
    if versus and versus.get("median"):
        from benchmarks import bench_versus

        lines += [
            bench_versus.markdown(versus).rstrip("\n")
            + (" (earlier run)" if versus.get("_from_file") else ""),
            "",
            "The other peers, measured after it (Accord's row from `bench_hop` and `bench_throughput`):",
            "",
        ]
    lines += [
        "Three-step chain of no-op steps, end to end (start → result), one run at a time for latency; "
        "sustained step completions per second for throughput. Same machine"
        + (f" ({hop['machine']['cpus']} cores, shared)" if hop else "")
        + "; x Accord = the peer's figure divided by Accord's.",
        "",
        "| system | chain p50 ms | x Accord | chain p99 ms | steps/s | x Accord | status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        status = (
            "ok" if not r["error"] else "failed: " + str(r["error"]).splitlines()[0][:80].replace("|", "/")
        )
        lines.append(
            f"| {r['system']} | {_num(r['p50_ms'], '.1f')} | {_ratio(r['p50_ms'], accord['p50_ms'])} | "
            f"{_num(r['p99_ms'], '.1f')} | {_num(r['steps_per_s'], '.1f')} | "
            f"{_ratio(r['steps_per_s'], accord['steps_per_s'])} | {status} |"
        )
    lines.append("")
    if hop:
        lines.append(
            f"Accord details: bare gRPC round trip (floor) p50 {hop['floor']['p50_ms']:.2f} ms; overhead per hop "
            f"(p50 chain - 3 x floor)/3 = {hop['overhead_per_hop_ms']:.1f} ms; coordinator CPU "
            f"{hop['chain']['coordinator_cpu_ms_per_run']:.1f} ms per chain run."
        )
    if tput:
        per = ", ".join(f"{r['agents']} agents: {r['steps_per_s']:.0f}/s" for r in tput["results"])
        lines.append(f"Throughput by agent processes ({tput['settings']['seconds']:.0f} s windows): {per}.")
    if scale:
        hist = scale.get("history") or []
        if hist:
            per = ", ".join(
                f"{r['stored_runs']:,}: {r['steps_per_s']:.0f}/s, {r['coordinator_cpu_ms_per_step']:.2f} ms CPU/step"
                f" ({r.get('cpu_per_step_ratio', '-')}x)"
                for r in hist
            )
            lines.append(
                "With N finished runs stored (the cost is the coordinator's CPU per step; steps/s follows"
                f" the shared machine's load): {per}."
            )
        z = scale.get("size")
        if z:
            per = z["bytes_per_run"]
            st = z["steady"]
            lines.append(
                f"Stored per finished three-step run: {per['without_spans']:,} bytes, and {per['spans']:,} of spans;"
                f" under a steady load with retention ({st['runs_finished_in_window']:,} runs in {st['seconds']:g} s),"
                f" what the store keeps once retention deleted them went {st['total_bytes_start'] / 2**20:.2f} ->"
                f" {st['total_bytes_end'] / 2**20:.2f} MB (x{st['growth_ratio']}, {st['kept_bytes_per_run']} bytes per"
                f" run): {'flat' if st['flat'] else 'growing'}."
            )
        w = scale.get("waiting")
        if w:
            lines.append(
                f"{w['waiting_runs']:,} runs waiting on a slow step: coordinator RSS {w['rss_before_mb']:.0f} → "
                f"{w['rss_after_mb']:.0f} MB ({w['kb_per_waiting_run']:.1f} KB per waiting run)."
            )
    if replicas and replicas.get("median"):
        lines.append(replicas_line(replicas))
    dates = []
    for name, data in (
        ("hop", hop),
        ("throughput", tput),
        ("scale", scale),
        ("replicas", replicas),
        ("versus", versus),
        ("peers", peers),
    ):
        if data and data.get("measured_at"):
            dates.append(
                f"{name} {data['measured_at']}" + (" (earlier run)" if data.get("_from_file") else "")
            )
    if dates:
        lines.append("")
        lines.append(
            "Measured: "
            + "; ".join(dates)
            + ". See docs/performance.md for how to reproduce and what limits the figures."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs and windows (a few minutes)")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="override the throughput, scale, replicas and versus windows (s)",
    )
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    started = time.monotonic()
    failures: dict[str, str] = {}

    def attempt(name: str, fn: Any, *fn_args: Any) -> dict[str, Any] | None:
        if name not in only:
            return _load(name)
        h.log(f"run_all: {name}")
        try:
            return fn(*fn_args)  # type: ignore[no-any-return]
        except h.Unavailable as exc:  # e.g. no PostgreSQL: said in one line, the others go on
            h.log(f"run_all: {name} not run: {exc}")
            failures[name] = str(exc)
            return _load(name)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            failures[name] = f"{type(exc).__name__}: {exc}"
            return _load(name)

    hop = attempt("hop", run_hop, args.quick)
    tput = attempt("throughput", run_throughput, args.quick, args.seconds)
    scale = attempt("scale", run_scale, args.quick, args.seconds)
    replicas = attempt("replicas", run_replicas, args.quick, args.seconds)
    versus = attempt("versus", run_versus, args.quick, args.seconds)
    if "peers" in only:
        h.log("run_all: peers")
        peers: dict[str, Any] | None = run_peers(args.quick)
    else:
        stored = _load("peers")
        peers = None if stored is None else {**stored, "results": stored.get("results") or {}}
    rows = combined_rows(hop, tput, peers)
    print()
    print(text_table(rows))
    summary = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": h.machine_info(),
        "quick": args.quick,
        "selected": sorted(only),
        "wall_s": round(time.monotonic() - started, 1),
        "rows": rows,
        "failures": failures,
        "accord": {
            "hop": hop and {k: hop[k] for k in ("chain", "floor", "overhead_per_hop_ms", "met") if k in hop},
            "throughput": tput and {k: tput[k] for k in ("best_steps_per_s", "met", "results") if k in tput},
            "scale": scale and {k: scale[k] for k in ("history", "waiting") if k in scale},
            "replicas": replicas
            and {k: replicas[k] for k in ("median", "ratios", "failover", "targets", "met") if k in replicas},
            "versus": versus
            and {k: versus[k] for k in ("median", "ratios", "goals", "errors") if k in versus},
        },
    }
    h.write_result("summary", summary)
    table_path = h.RESULTS / "README-table.md"
    table_path.write_text(markdown(rows, hop, tput, scale, peers, replicas, versus))
    print(f"\nwritten: {h.RESULTS / 'summary.json'}, {table_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM in bench_replicas
        print("interrupted", file=sys.stderr)
        sys.exit(130)
