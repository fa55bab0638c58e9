"""contracts.runtime: the process-wide garbage collector settings of the coordinator and agents."""

from __future__ import annotations

import json
import subprocess
import sys

from contracts.runtime import GC_THRESHOLDS


def test_settle_gc_freezes_what_start_up_made_and_makes_full_passes_rarer() -> None:
    # In a process of its own: the settings are the process's, not to be left in the test runner.
    code = (
        "import gc, json; from contracts.runtime import settle_gc; before = gc.get_freeze_count();"
        " settle_gc(); print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, frozen, thresholds = json.loads(out)
    assert before == 0 and frozen > 1_000  # the modules' objects, at least
    assert tuple(thresholds) == GC_THRESHOLDS
    assert GC_THRESHOLDS[2] > 10  # CPython's default full-pass ratio, made rarer
