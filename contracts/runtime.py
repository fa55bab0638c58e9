"""Settings of the long-running processes (the coordinator, a team agent) that are the process's
own rather than a component's.

``settle_gc``: CPython's cyclic garbage collector, at its defaults, makes a full pass over every
object the process holds after every 10 passes of its middle generation. Under load that was
about one full pass a second in the coordinator, ~85 ms each in which nothing else ran, and
two-thirds of the ~12 % of its CPU the collector took (docs/performance.md, "The third pass").
Once start-up is done, what it made (modules, configuration, what start-up cached) is moved out
of the collector's sight (``gc.freeze``), and full passes come ten times less often; the young
generations keep CPython's settings, whose passes are short (~0.2 ms), so that no request waits
long for one.
"""

from __future__ import annotations

import gc

# (generation 0 allocations, generation 0 passes per generation 1 pass, generation 1 passes per
# full pass), for ``gc.set_threshold``: CPython's (700, 10, 10) with full passes ten times rarer.
GC_THRESHOLDS = (700, 10, 100)


def settle_gc() -> None:
    """Call once, when the process has started and before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
