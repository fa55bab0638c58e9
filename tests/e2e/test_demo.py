"""`accord demo` is what a new user runs first: it must tell the whole story and stop cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ACCORD = str(Path(sys.executable).parent / "accord")


def test_demo_tells_the_story_and_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [ACCORD, "demo", "--home", str(home), "--ui", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "ACCORD_HOME": str(home)},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "o-1001         succeeded" in out
    assert "flaky-1002     succeeded" in out
    assert "declined-1003  failed" in out
    # The event-driven hand-off: payments' event starts shipping's workflow.
    assert "paid-1004      succeeded" in out and "an event-driven hand-off" in out
    assert "CardDeclined" in out
    # the refused breaking change names the consumer workflow, its team and the field it reads
    assert "breaks workflow shipping/order-to-cash" in out
    assert "team shipping" in out and "payment_ref" in out
    # the retried run's trace, one row per hop: the charge hop says it took two attempts
    trace = out.split("Trace of run", 1)[1]
    charge = next(line for line in trace.splitlines() if line.lstrip().startswith("charge · payments/"))
    assert charge.rstrip().endswith("ok (2 attempts)"), trace
    assert "[0] · crm/notify-customer@1.0.0" in trace and "[1] · crm/notify-customer@1.0.0" in trace
    # the agents' own spans arrived before the demo printed: more than the coordinator's 13
    # (the run, 6 steps, 6 attempts)
    hops, spans = re.search(r"· (\d+) hops of (\d+) spans ·", trace).groups()  # type: ignore[union-attr]
    assert int(hops) == 7 and int(spans) > 13, trace
    # nothing left running: every process group the demo started is gone
    leftovers = subprocess.run(
        ["pgrep", "-f", f"ACCORD_HOME={home}|{home}/agents"], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() == ""


def test_demo_assets_are_the_examples() -> None:
    """The demo ships copies of the example files (so it works wherever accord is installed);
    they must not drift from examples/."""
    assets = ROOT / "coordinator" / "demo" / "assets"
    pairs = [(assets / "contracts" / p.name, p) for p in (ROOT / "examples" / "contracts").glob("*.yaml")]
    pairs.append((assets / "order-to-cash.yaml", ROOT / "examples" / "workflows" / "order-to-cash.yaml"))
    pairs.append(
        (
            assets / "charge-card-1.3.0-breaking.yaml",
            ROOT / "examples/contracts/breaking/charge-card-1.3.0.yaml",
        )
    )
    for copy, original in pairs:
        assert copy.read_text() == original.read_text(), f"{copy} differs from {original}"
