"""Per-team limits set by the admin (``accord team limits TEAM``; docs/production.md, "Team
limits"): how many runs a team may start per second (``start_rate``) and how many of its steps
agents may run at once (``max_concurrency``). Kept in the store's settings, cached by each
coordinator and read again with the other shared caches.

The start rate is a token bucket per team kept in the store (``Store.take_start_token``, a burst
of one second's worth), so every coordinator on the store takes from the same one and the rate
holds across replicas: a StartRun over it is refused RESOURCE_EXHAUSTED with a ``retry-after-ms``
hint, as the edge's admission control does. The concurrency limit is counted in the store's
``inflight`` table and checked in the claim's own transaction (``Changes.inflight_caps``): polls
pass by a team at its limit, and an agent is never handed a task past it (the engine's
``_claim_team_offer``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from contracts.errors import InvalidArgumentError

SETTING_KEY = "team_limits"
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_RATE = 1_000_000.0


@dataclass(frozen=True)
class TeamLimits:
    max_concurrency: int = 0  # steps agents run at once for the team's runs; 0: none
    start_rate: float = 0.0  # runs per second; 0: none

    def describe(self) -> str:
        parts = []
        if self.start_rate:
            parts.append(f"start rate {format_rate(self.start_rate)}")
        if self.max_concurrency:
            parts.append(f"max concurrency {self.max_concurrency}")
        return ", ".join(parts) or "none"


def parse_rate(text: str) -> float:
    """``50/s``, ``600/m``, ``10/h`` -> runs per second; ``0`` or ``off`` -> 0 (no limit)."""
    if text.strip() in ("0", "off", "none"):
        return 0.0
    match = _RATE.match(text)
    if match is None:
        raise InvalidArgumentError(f"start rate '{text}' must look like 50/s, 600/m or 10/h (or off)")
    rate = float(match.group(1)) / _PER[match.group(2)]
    if not 0 < rate <= MAX_RATE:
        raise InvalidArgumentError(f"start rate '{text}' must be above 0 and at most {MAX_RATE:g}/s (or off)")
    return rate


def format_rate(per_second: float) -> str:
    if per_second >= 1:
        return f"{per_second:g}/s"
    if per_second * 60 >= 1:
        return f"{per_second * 60:g}/m"
    return f"{per_second * 3600:g}/h"


def limits_from_setting(text: str | None) -> dict[str, TeamLimits]:
    if not text:
        return {}
    return {team: TeamLimits(**values) for team, values in json.loads(text).items()}


def limits_to_setting(limits: dict[str, TeamLimits]) -> str:
    return json.dumps({team: asdict(value) for team, value in sorted(limits.items())}, separators=(",", ":"))


def start_burst(rate: float) -> float:
    """How many runs a team with a start rate of ``rate`` a second may start at once, after a
    quiet second: one second's worth (at least one)."""
    return max(1.0, rate)
