"""Settings of the long-running processes (the coordinator, a team agent) that are the process's
own rather than a component's, made once start-up is done (``settle_runtime``).

The garbage collector: CPython's cyclic garbage collector, at its defaults, makes a full pass over every
object the process holds after every 10 passes of its middle generation. Under load that was
about one full pass a second in the coordinator, ~85 ms each in which nothing else ran, and
two-thirds of the ~12 % of its CPU the collector took (docs/performance.md, "The third pass").
Once start-up is done, what it made (modules, configuration, what start-up cached) is moved out
of the collector's sight (``gc.freeze``), and full passes come ten times less often; the young
generations keep CPython's settings, whose passes are short (~0.2 ms), so that no request waits
long for one.

The GIL's switch interval: a thread that wants the GIL waits up to this long for a thread running
Python to hand it over. The event loop shares the process with threads that do work in Python in
bursts (an agent's span exporter encoding a batch, the coordinator's SQLite writer and readers),
and at CPython's 5 ms every callback of the loop behind such a burst waited up to 5 ms: most of a
chain's p99 one run at a time (`bench_versus`, two pairs of rounds: 29.8 and 25.8 ms at 5 ms,
21.3 and 21.4 ms at 1 ms, steps/s and CPU per step unchanged within the noise).
"""

from __future__ import annotations

import gc
import sys

# (generation 0 allocations, generation 0 passes per generation 1 pass, generation 1 passes per
# full pass), for ``gc.set_threshold``: CPython's (700, 10, 10) with full passes ten times rarer.
GC_THRESHOLDS = (700, 10, 100)
# Seconds, for ``sys.setswitchinterval`` (CPython's default: 0.005).
SWITCH_INTERVAL_S = 0.001


def settle_runtime() -> None:
    """Call once, when the process has started and before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
