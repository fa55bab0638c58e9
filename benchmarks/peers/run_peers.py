"""Run the three-step chain on Temporal, Prefect 3 and Airflow 3 and print one table.

    python -m benchmarks.peers.run_peers [--only temporal,prefect,airflow]
                                         [--runs N] [--airflow-runs N] [--seconds S]

Each peer lives in its own venv under benchmarks/.envs/<peer> (created on first use,
reused afterwards).  A peer that fails to install or start is reported in the table
with its error, never as a crash.  Results go to benchmarks/results/peers.json.

``run(...)`` is the entry point for benchmarks/run_all.py; it returns
``{peer: {"p50_ms", "p99_ms", "steps_per_s", "error", ...details}}``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import airflow_chain, common, prefect_chain, temporal_chain

PEERS = ("temporal", "prefect", "airflow")
DEFAULT_OUT = common.RESULTS_DIR / "peers.json"


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "temporal": temporal_chain.run,
    "prefect": prefect_chain.run,
    "airflow": airflow_chain.run,
}


def _runner(peer: str) -> Callable[..., dict[str, Any]]:
    return RUNNERS[peer]


def run(
    only: Iterable[str] | None = None,
    runs: int = 50,
    seconds: float = 20.0,
    *,
    airflow_runs: int | None = None,
    out_path: Path | None = DEFAULT_OUT,
    log_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Benchmark the selected peers one after the other (never concurrently, so they
    do not share the two cores).  ``runs`` latency runs each, except Airflow, which
    gets ``airflow_runs`` (default ``min(runs, 10)``: a run takes ~4 s).  ``seconds``
    is the throughput window.  Writes ``out_path`` unless it is None."""
    selected = list(only) if only else list(PEERS)
    unknown = [p for p in selected if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s): {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if airflow_runs is None:
        airflow_runs = min(runs, 10)
    results: dict[str, dict[str, Any]] = {}
    for peer in selected:
        n = airflow_runs if peer == "airflow" else runs
        common.log(f"{peer}: {n} latency runs, {seconds:.0f} s throughput window")
        t0 = time.monotonic()
        load_before = common.loadavg()
        try:
            kwargs: dict[str, Any] = {}
            if log_dir is not None:
                (log_dir / peer).mkdir(parents=True, exist_ok=True)
                kwargs["log_dir"] = log_dir / peer
            res = _runner(peer)(n, seconds, **kwargs)
        except Exception as exc:  # a driver bug must not hide the other peers
            traceback.print_exc(file=sys.stderr)
            res = common.empty_result(f"{type(exc).__name__}: {exc}")
        res["wall_s"] = round(time.monotonic() - t0, 1)
        # The machine is shared: record how busy it was (1-min load, 2 cores).
        res["loadavg_1m"] = {"before": load_before, "after": common.loadavg()}
        for key in ("p50_ms", "p99_ms", "steps_per_s", "error"):
            res.setdefault(key, None)
        results[peer] = res
        status = res["error"] or f"p50 {res['p50_ms']} ms, {res['steps_per_s']} steps/s"
        common.log(f"{peer}: done in {res['wall_s']} s: {status}")
    if out_path is not None:
        common.write_json(
            out_path,
            {
                "what": "three-step chain (no-op steps returning a small dict), peers on this machine",
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "settings": {"runs": runs, "airflow_runs": airflow_runs, "seconds": seconds},
                "machine": common.machine_info(),
                "results": results,
            },
        )
    return results


def format_table(results: dict[str, dict[str, Any]]) -> str:
    def num(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    rows = [("peer", "p50 ms", "p99 ms", "steps/s", "status")]
    for peer, r in results.items():
        err = r.get("error")
        status = "ok" if not err else "FAILED: " + str(err).splitlines()[0][:90]
        rows.append(
            (
                peer,
                num(r.get("p50_ms"), ".1f"),
                num(r.get("p99_ms"), ".1f"),
                num(r.get("steps_per_s"), ".2f"),
                status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)] + [row[4]]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ------")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(PEERS), help="comma-separated subset of: " + ",".join(PEERS))
    ap.add_argument("--runs", type=int, default=50, help="latency runs per peer (default 50)")
    ap.add_argument(
        "--airflow-runs", type=int, default=None, help="latency runs for Airflow (default min(runs, 10))"
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="throughput window, s (default 20)")
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="result JSON (default benchmarks/results/peers.json)"
    )
    ap.add_argument("--log-dir", type=Path, default=None, help="keep peer server logs here")
    a = ap.parse_args(argv)
    only = [p.strip() for p in a.only.split(",") if p.strip()]
    try:
        results = run(only, a.runs, a.seconds, airflow_runs=a.airflow_runs, out_path=a.out, log_dir=a.log_dir)
    except ValueError as exc:
        ap.error(str(exc))
    print(format_table(results))
    if a.out is not None:
        print(f"\nwritten: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
