"""contracts.runtime: the process-wide garbage collector and GIL settings of the coordinator and
agents."""

from __future__ import annotations

import json
import subprocess
import sys

from contracts.runtime import GC_THRESHOLDS, SWITCH_INTERVAL_S


def test_settle_runtime_freezes_what_start_up_made_makes_full_passes_rarer_and_hands_the_gil_sooner() -> None:
    # In a process of its own: the settings are the process's, not to be left in the test runner.
    code = (
        "import gc, json, sys; from contracts.runtime import settle_runtime;"
        " before = gc.get_freeze_count(), sys.getswitchinterval(); settle_runtime();"
        " print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(), sys.getswitchinterval()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    (frozen_before, switch_before), frozen, thresholds, switch = json.loads(out)
    assert frozen_before == 0 and frozen > 1_000  # the modules' objects, at least
    assert tuple(thresholds) == GC_THRESHOLDS
    assert GC_THRESHOLDS[2] > 10  # CPython's default full-pass ratio, made rarer
    assert switch == SWITCH_INTERVAL_S < switch_before  # CPython's default is 5 ms
