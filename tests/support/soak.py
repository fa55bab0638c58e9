"""Two sizes of the chaos, load and fuzz tests: a short one that ``make test`` runs (and a plain
``pytest``), and the full one that ``make soak`` runs (``pytest -m soak``).

    @sized("runs, kills", short=(50, 1), soak=(1000, 5))
    async def test_kill_9_during_runs_then_restart(coordinator, test_agent, runs, kills): ...

collects ``test_...[short]`` and ``test_...[soak]``; the soak one carries the ``soak`` mark, which
``pytest``'s default options deselect (pyproject.toml: ``-m "not soak"``), and a longer timeout.
"""

from __future__ import annotations

from typing import Any

import pytest

SOAK_TIMEOUT_S = 3600


def sized(argnames: str, *, short: Any, soak: Any) -> pytest.MarkDecorator:
    """Parametrize ``argnames`` with the short size (id ``short``) and the soak size (id
    ``soak``, marked ``soak``). With several names, ``short`` and ``soak`` are tuples."""
    several = "," in argnames
    return pytest.mark.parametrize(
        argnames,
        [
            pytest.param(*(short if several else (short,)), id="short"),
            pytest.param(
                *(soak if several else (soak,)),
                id="soak",
                marks=[pytest.mark.soak, pytest.mark.timeout(SOAK_TIMEOUT_S)],
            ),
        ],
    )


# The xdist group of the tests that compare a chain's latency with and without some load in one
# run (1.5x): on one worker, one after another, so none of them is another's load.
LATENCY_RATIOS = "latency-ratios"
