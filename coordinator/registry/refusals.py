"""How many refused registrations the audit log takes from one actor.

A refused registration changes nothing, yet who tried what, and why it was refused, belongs in
the audit log. A team (or a script of its) that sends refused registrations in a loop must not
grow the log as fast as it can send, though: each actor (a team, or the admin) has a budget of
``burst`` entries, refilled at one every ``every_s`` seconds. A refusal over budget is not
written; it is counted, and the count goes with the actor's next refusal that is written
(``details.not_logged_before``), so the log still says how many there were. See
docs/production.md, "What each audit entry means".

The budget lives in each coordinator's memory: with several coordinators an actor may get a
budget at each, still a fixed bound. Only authenticated actors reach the registry, so there are
as many budgets as teams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_BURST = 10
DEFAULT_EVERY_S = 60.0


@dataclass
class _Budget:
    tokens: float
    at: float
    left_out: int = 0


class RefusalBudget:
    """Per actor: at most ``burst`` refusal entries at once, then one every ``every_s`` seconds."""

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        every_s: float = DEFAULT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or every_s <= 0:
            raise ValueError(f"a refusal budget needs burst >= 1 and every_s > 0, not {burst} and {every_s}")
        self.burst = burst
        self.every_s = every_s
        self._clock = clock
        self._budgets: dict[str, _Budget] = {}

    def admit(self, actor: str) -> tuple[bool, int]:
        """Whether to write this refusal of ``actor``'s, and (when it is written) how many of
        its refusals were left out since its last one written."""
        now = self._clock()
        budget = self._budgets.get(actor)
        if budget is None:
            budget = self._budgets[actor] = _Budget(tokens=float(self.burst), at=now)
        budget.tokens = min(float(self.burst), budget.tokens + (now - budget.at) / self.every_s)
        budget.at = now
        if budget.tokens >= 1:
            budget.tokens -= 1
            left_out, budget.left_out = budget.left_out, 0
            return True, left_out
        budget.left_out += 1
        if budget.left_out == 1:
            logger.warning(
                "%s is sending refused registrations faster than the audit log takes them "
                "(%d, then one every %gs): the next entry written counts the ones left out",
                actor,
                self.burst,
                self.every_s,
            )
        return False, 0


__all__ = ["RefusalBudget"]
