"""The autonomy report: how independently each team changes what it owns, computed from the
audit log and the run history only (docs/governance.md, "The autonomy report").

Nothing here is entered by hand. A *change* is an audit entry ``contract.register`` (a contract
version), ``workflow.register``/``workflow.rollback`` (a workflow version) or ``agent.register``
that changes what serves one of the team's contracts: the entry carries the fingerprint of each
binding's configuration the agent reports, and it is a change only when, for a (team,
contract@major) it serves, that fingerprint differs from the one registered last for it, by
whichever agent. Agent ids are per process by default (host-pid), so a restart or a second
replica is a new ``agent.register`` entry but, with the same configuration, no change. A run
*uses* a contract version when it pinned it, a workflow version when it ran it, and an agent's
change when it pinned a contract major the change concerns and finished after the change. Each
figure's method is in :data:`METHODS`, and the report carries them.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.store.records import (
    OVERRIDE_ACTIONS,
    RUN_FAILED,
    RUN_SUCCEEDED,
    AuditRecord,
    RunRecord,
    WorkflowRecord,
)

DAY_MS = 24 * 3600 * 1000
#: ``autonomy changes``: a change is a bottleneck beyond this many teams or this long.
BOTTLENECK_TEAMS = 2
BOTTLENECK_MS = 7 * DAY_MS

CHANGE_ACTIONS = (
    "contract.register",
    "workflow.register",
    "workflow.rollback",
    "agent.register",
    "contract.retire",
)
# The consumers a refusal names: "breaks workflow W (vN, team T), ..." (a registration),
# "workflow W vN (team T), step ..." and "run R (W vN, team T) ..." (a retirement).
_CONSUMER = re.compile(
    r"(?:breaks workflow (\S+) \(v\d+, team ([a-z0-9][a-z0-9_-]*)\))"
    r"|(?:^workflow (\S+) v\d+ \(team ([a-z0-9][a-z0-9_-]*)\))"
    r"|(?:^run \S+ \((\S+) v\d+, team ([a-z0-9][a-z0-9_-]*)\))"
)
_REFUSALS = {"contract.register.refused": "contract.register", "contract.retire.refused": "contract.retire"}
_WORKFLOW_OBJECT = re.compile(r"^(\S+) v(\d+)$")

METHODS: dict[str, str] = {
    "changes": "audit entries in the period: contract.register (a contract version), workflow.register and "
    "workflow.rollback (a workflow version), agent.register when it changes what serves a contract: for a "
    "(team, contract@major) it serves, the binding's configuration fingerprint differs from the one registered "
    "last for it, by any agent (an agent restarting, or another replica, with the same configuration is no "
    "change), policy.override and run.override (overrides), by owning team",
    "time_to_deploy": "per change, from its audit entry to the end of the first successful run that uses it "
    "(pinned the contract version; ran the workflow version; pinned a contract major the changed agent serves); "
    "the median over the changes that have such a run",
    "needed_other_teams": "a change that went through after a refusal naming other teams' workflows: a contract "
    "registration refused as breaking consumers (audit contract.register.refused, 'breaks workflow W (vN, team T)'), "
    "or a retirement refused while other teams' workflows or runs still used the version (contract.retire.refused), "
    "later registered or retired: the teams named had to change first; waited is from the first refusal",
    "cross_team_dependencies": "calls: the other teams whose contracts the team's workflows call (newest "
    "versions); called_by: teams whose workflows call the team's contracts; events: teams whose events trigger "
    "the team's workflows, and teams triggered by the team's events",
    "platform_interventions": "audit entries the admin made on the team's objects (platform_intervention)",
    "overrides": "audit entries policy.override and run.override concerning the team",
    "refused_breaking_changes": "audit entries contract.register.refused and contract.retire.refused that name "
    "other teams' workflows or runs, with those teams",
    "change_frequency": "changes per day in the period (contract versions, workflow versions, agent binding changes)",
    "lead_time": "the median time to deploy (above)",
    "change_failure_rate": "changes followed by a failed run that uses them (before the object's next change), "
    "or by a rollback of the workflow, over the changes that have at least one run using them",
    "over_time": "the figures above per period (by UTC day, ISO week from Monday, or month; the first and "
    "last periods are cut by the report's period): the changes made in the period, each followed up to now (a "
    "change made one week and first used the next counts for its own week), and the refusals, interventions and "
    "overrides of the period; change frequency is per day of the period; cross-team dependencies are not broken "
    "down (they are those of the newest workflow versions)",
    "truncated": "when the period holds more audit entries, runs or digests of deleted runs than the "
    "coordinator reads for one report (--autonomy-rows, each; the newest first), the report covers the part "
    "of the period that was read in full and says so (truncated: requested_since_ms, covered_from_ms); null otherwise",
    "time_to_restore": "per failed change, from the end of the first failed run that uses it to the end of the "
    "next successful run of the same contract, workflow or served contract (any version); the median",
}


@dataclass
class Change:
    """One change, with what the report derives for it."""

    entry: AuditRecord
    kind: str  # contract | workflow | agent | retire (a contract version or major taken out of service)
    name: str  # contract or workflow name; the agent id
    version: str  # contract version; workflow version; "" for an agent
    serves: tuple[tuple[str, int], ...] = ()  # an agent change: the (contract, major) whose binding changed
    first_success_ms: int = 0
    first_failure_ms: int = 0
    restored_ms: int = 0
    rolled_back: bool = False
    used: bool = False
    needed_teams: tuple[str, ...] = ()
    first_refused_ms: int = 0
    involved: set[str] = field(default_factory=set)

    @property
    def team(self) -> str:
        return self.entry.owner_team

    @property
    def lead_ms(self) -> int | None:
        return self.first_success_ms - self.entry.at_ms if self.first_success_ms else None

    @property
    def failed(self) -> bool:
        return self.first_failure_ms > 0 or self.rolled_back

    def uses(self, run: RunRecord) -> bool:
        if self.kind == "contract":
            return run.pinned.get(self.name) == self.version
        if self.kind == "workflow":
            return run.workflow == self.name and str(run.workflow_version) == self.version
        if self.kind == "agent":
            return any(_major(run.pinned.get(c, "")) == m for c, m in self.serves)
        return False  # a retirement: no run uses it

    def same_object(self, run: RunRecord) -> bool:
        """A run of the same contract, workflow or served contract, whatever version."""
        if self.kind == "contract":
            return self.name in run.pinned
        if self.kind == "workflow":
            return run.workflow == self.name
        return any(c in run.pinned for c, _ in self.serves) if self.kind == "agent" else False


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else -1


def _change_of(entry: AuditRecord) -> Change | None:
    if entry.action == "contract.register":
        name, _, version = entry.object.partition("@")
        return Change(entry, "contract", name, version)
    if entry.action in ("workflow.register", "workflow.rollback"):
        match = _WORKFLOW_OBJECT.match(entry.object)
        if not match:
            return None
        return Change(entry, "workflow", match.group(1), match.group(2))
    if entry.action == "contract.retire":
        return Change(entry, "retire", entry.object, "")
    return None


#: What served each (team, "contract@major") last: the fingerprint of the binding registered last.
Serving = dict[tuple[str, str], str]


def _bindings(entry: AuditRecord) -> list[tuple[str, str]]:
    """An ``agent.register`` entry's ("contract@major", fingerprint) per binding ("" when the agent
    reported none: an older agent)."""
    fingerprints = entry.details.get("fingerprints") or {}
    return [(str(key), str(fingerprints.get(key, ""))) for key in entry.details.get("serves") or []]


def serving_before(entries_newest_first: Iterable[AuditRecord]) -> Serving:
    """What served each (team, contract@major) at the start of a period: the fingerprint of the
    newest ``agent.register`` before it (``entries_newest_first``: those entries, newest first)."""
    serving: Serving = {}
    for entry in entries_newest_first:
        if entry.action == "agent.register":
            for key, fingerprint in _bindings(entry):
                serving.setdefault((entry.owner_team, key), fingerprint)
    return serving


def _agent_change(entry: AuditRecord, serving: Serving) -> Change | None:
    """The change an ``agent.register`` entry makes, if any: the bindings whose fingerprint
    differs from what served the (team, contract@major) last (``serving``, updated), whatever
    the agent's id. A restart or another replica with the same configuration changes nothing."""
    changed = []
    for key, fingerprint in _bindings(entry):
        before = serving.get((entry.owner_team, key))
        serving[(entry.owner_team, key)] = fingerprint
        contract, _, major = key.partition("@")
        if fingerprint != before and major.isdigit():
            changed.append((contract, int(major)))
    return Change(entry, "agent", entry.object, "", tuple(changed)) if changed else None


def _changes(entries: list[AuditRecord], serving: Serving | None) -> list[Change]:
    """The changes among ``entries`` (oldest first); ``serving``: what served each contract when
    the period began (:func:`serving_before`)."""
    serving = dict(serving or {})
    changes = []
    for entry in entries:
        change = _agent_change(entry, serving) if entry.action == "agent.register" else _change_of(entry)
        if change is not None:
            changes.append(change)
    return changes


def _median(values: Iterable[int]) -> int | None:
    listed = list(values)
    return int(statistics.median(listed)) if listed else None


def _follow(changes: list[Change], runs: list[RunRecord]) -> None:
    """Fill in each change's first success, first failure, restore and rollback from the runs."""
    finished = sorted((r for r in runs if r.finished_ms), key=lambda r: (r.finished_ms, r.run_id))
    following_of: dict[int, Change] = {}
    by_object: dict[tuple[str, str], list[Change]] = defaultdict(list)
    for change in changes:
        by_object[(change.kind, change.name)].append(change)
    for (kind, _), listed in by_object.items():
        if kind == "agent":
            continue  # an agent change is followed by the next one of a contract it concerns, below
        listed.sort(key=lambda c: c.entry.id)
        for current, following in itertools.pairwise(listed):
            following_of[id(current)] = following
    last_of: dict[tuple[str, str, int], Change] = {}
    for change in sorted((c for c in changes if c.kind == "agent"), key=lambda c: c.entry.id):
        for contract, major in change.serves:
            before = last_of.get((change.team, contract, major))
            if before is not None and id(before) not in following_of:
                following_of[id(before)] = change
            last_of[(change.team, contract, major)] = change
    for change in changes:
        next_one = following_of.get(id(change))
        until = next_one.entry.at_ms if next_one else 0
        # A workflow version whose next change is a rollback was rolled back.
        change.rolled_back = next_one is not None and next_one.entry.action == "workflow.rollback"
        for run in finished:
            if run.created_ms < change.entry.at_ms or not change.uses(run):
                continue
            if until and run.created_ms >= until:
                break
            change.used = True
            if run.status == RUN_SUCCEEDED and not change.first_success_ms:
                change.first_success_ms = run.finished_ms
            if run.status == RUN_FAILED and not change.first_failure_ms:
                change.first_failure_ms = run.finished_ms
        if change.first_failure_ms:
            for run in finished:
                if (
                    run.finished_ms > change.first_failure_ms
                    and run.status == RUN_SUCCEEDED
                    and change.same_object(run)
                ):
                    change.restored_ms = run.finished_ms
                    break


def _refusals(entries: list[AuditRecord]) -> list[dict[str, Any]]:
    """Refused registrations and retirements that named consumers (other teams' workflows)."""
    refused = []
    for e in entries:
        if e.action not in _REFUSALS:
            continue
        lines = [str(x) for x in e.details.get("problems") or []]
        consumers: set[tuple[str, str]] = set()
        for line in lines:
            for m in _CONSUMER.finditer(line):
                groups = [g for g in m.groups() if g]
                consumers.add((groups[0], groups[1]))
        if not consumers:
            continue
        refused.append(
            {
                "at_ms": e.at_ms,
                "team": e.owner_team,
                "action": _REFUSALS[e.action],
                "contract": e.object,
                "consumers": [{"workflow": w, "team": t} for w, t in sorted(consumers)],
                "consumer_teams": sorted({t for _, t in consumers}),
                "reason": e.details.get("reason", ""),
            }
        )
    return refused


def _waited_for(change: Change, refusals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The refusals of the same registration or retirement before ``change`` went through."""
    if change.kind not in ("contract", "retire"):
        return []
    action = "contract.register" if change.kind == "contract" else "contract.retire"
    return [
        r
        for r in refusals
        if r["action"] == action and r["contract"] == change.entry.object and r["at_ms"] <= change.entry.at_ms
    ]


def _dependencies(
    workflows: list[WorkflowRecord], triggers: dict[str, list[str]]
) -> dict[str, dict[str, set[str]]]:
    """team -> {calls, called_by, events_from, events_to} from the newest workflow versions."""
    deps: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for wf in workflows:
        for contract in wf.contracts:
            owner = contract.split("/", 1)[0]
            if owner != wf.team:
                deps[wf.team]["calls"].add(owner)
                deps[owner]["called_by"].add(wf.team)
        for event in triggers.get(wf.name, []):
            owner = event.split("/", 1)[0]
            if owner != wf.team:
                deps[wf.team]["events_from"].add(owner)
                deps[owner]["events_to"].add(wf.team)
    return deps


def _ms(value: int | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"ms": value, "text": duration_text(value)}


def duration_text(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


#: ``--by``: the length of the periods of ``over_time``.
PERIODS = ("day", "week", "month")
#: The most periods a report breaks its window into (e.g. 2 years by week; 400 days by day).
MAX_PERIODS = 400


def period_starts(since_ms: int, until_ms: int, by: str, limit: int = MAX_PERIODS + 1) -> list[int]:
    """The starts of the periods ``[since_ms, until_ms)`` falls into, by UTC calendar day, ISO
    week (from Monday) or month; the first is ``since_ms`` itself (a period cut by the window).
    At most ``limit`` of them (more says the window holds too many)."""
    if by not in PERIODS:
        raise ValueError(f"by: one of {', '.join(PERIODS)}, not {by!r}")
    start = datetime.fromtimestamp(since_ms / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if by == "week":
        start -= timedelta(days=start.weekday())
    elif by == "month":
        start = start.replace(day=1)
    starts = [since_ms]
    while True:
        if by == "day":
            start += timedelta(days=1)
        elif by == "week":
            start += timedelta(days=7)
        else:
            start = (start + timedelta(days=32)).replace(day=1)
        at = int(start.timestamp() * 1000)
        if at >= until_ms or len(starts) >= limit:
            return starts
        starts.append(at)


def _label(start_ms: int, by: str) -> str:
    day = datetime.fromtimestamp(start_ms / 1000, UTC)
    if by == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.strftime("%Y-%m" if by == "month" else "%Y-%m-%d")


def build_report(
    entries: list[AuditRecord],
    runs: list[RunRecord],
    workflows: list[WorkflowRecord],
    triggers: dict[str, list[str]],
    since_ms: int,
    now_ms: int,
    team: str = "",
    *,
    serving: Serving | None = None,
    by: str = "week",
    requested_since_ms: int = 0,
    cut_by: str = "",
) -> dict[str, Any]:
    """The report (a JSON-ready dict): per team, and per contract for the DORA keys; and per
    team over time, by ``by`` (``over_time``, one entry per period of ``periods``).

    ``entries``: the audit entries of the period, oldest first; ``runs``: the runs created in the
    period; ``workflows``: the newest version of each workflow; ``triggers``: workflow name -> the
    event contracts that trigger it; ``serving``: what served each contract when the period
    began (:func:`serving_before`). ``requested_since_ms`` earlier than ``since_ms``: the period
    asked for, which reading at most so many rows (``cut_by`` says which) cut to ``since_ms``."""
    starts = period_starts(since_ms, now_ms, by)
    changes = _changes(entries, serving)
    _follow(changes, runs)
    refusals = _refusals(entries)
    for change in changes:
        before = _waited_for(change, refusals)
        if before:
            change.needed_teams = tuple(sorted({t for r in before for t in r["consumer_teams"]}))
            change.first_refused_ms = before[0]["at_ms"]
    deps = _dependencies(workflows, triggers)
    teams = sorted({e.owner_team for e in entries if e.owner_team} | set(deps))
    if team:
        teams = [team]
    spans = list(itertools.pairwise([*starts, now_ms]))
    periods: list[dict[str, Any]] = [
        {"label": _label(start, by), "start_ms": start, "end_ms": end} for start, end in spans
    ]
    report_teams = []
    for name in teams:
        own = [c for c in changes if c.team == name]
        mine = [e for e in entries if e.owner_team == name]
        mine_refused = [r for r in refusals if r["team"] == name]
        figures = _figures(own, mine, mine_refused, since_ms, now_ms)
        over_time = []
        for (start, end), period in zip(spans, periods, strict=True):
            within = _figures(
                [c for c in own if start <= c.entry.at_ms < end],
                [e for e in mine if start <= e.at_ms < end],
                [r for r in mine_refused if start <= r["at_ms"] < end],
                start,
                end,
            )
            over_time.append(
                {
                    "period": period["label"],
                    "start_ms": start,
                    "end_ms": end,
                    "changes": within["changes"],
                    "time_to_deploy": within["time_to_deploy"],
                    "needed_other_teams": len(within["needed_other_teams"]),
                    "platform_interventions": within["platform_interventions"],
                    "overrides": len(within["overrides"]),
                    "refused_breaking_changes": len(within["refused_breaking_changes"]),
                    "dora": within["dora"],
                }
            )
        report_teams.append(
            {
                "team": name,
                **figures,
                "cross_team_dependencies": {
                    key: sorted(deps.get(name, {}).get(key, set()))
                    for key in ("calls", "called_by", "events_from", "events_to")
                },
                "contracts": _per_contract(own, _days(since_ms, now_ms)),
                "over_time": over_time,
            }
        )
    truncated = None
    if requested_since_ms and requested_since_ms < since_ms:
        truncated = {
            "requested_since_ms": requested_since_ms,
            "covered_from_ms": since_ms,
            "why": f"the report reads at most the newest {cut_by}; the figures cover the period from "
            "covered_from_ms in full, and nothing before it (ask for a shorter period, or one team)",
        }
    return {
        "since_ms": since_ms,
        "until_ms": now_ms,
        "truncated": truncated,
        "by": by,
        "periods": periods,
        "teams": report_teams,
        "how": METHODS,
    }


def _days(since_ms: int, until_ms: int) -> float:
    return max((until_ms - since_ms) / DAY_MS, 1 / 24)


def _figures(
    own: list[Change],
    mine: list[AuditRecord],
    refused: list[dict[str, Any]],
    since_ms: int,
    until_ms: int,
) -> dict[str, Any]:
    """A team's figures for the changes, entries and refusals of one period (changes are those
    made in it; whether they reached production or failed is followed up to now)."""
    return {
        "changes": {
            "contract_versions": sum(1 for c in own if c.kind == "contract"),
            "workflow_versions": sum(1 for c in own if c.kind == "workflow"),
            "agent_binding_changes": sum(1 for c in own if c.kind == "agent"),
            "retirements": sum(1 for c in own if c.kind == "retire"),
            "overrides": sum(1 for e in mine if e.action in OVERRIDE_ACTIONS),
        },
        "time_to_deploy": _ms(_median(c.lead_ms for c in own if c.lead_ms is not None)),
        "needed_other_teams": [
            {
                "change": f"{'retire ' if c.kind == 'retire' else ''}{c.entry.object}",
                "teams": list(c.needed_teams),
                "waited": _ms(c.entry.at_ms - c.first_refused_ms),
            }
            for c in own
            if c.needed_teams
        ],
        "platform_interventions": sum(1 for e in mine if e.platform_intervention),
        "overrides": [
            {
                "at_ms": e.at_ms,
                "actor": e.actor,
                "object": e.object,
                "rule": e.details.get("rule", ""),
                "reason": e.details.get("reason", ""),
            }
            for e in mine
            if e.action in OVERRIDE_ACTIONS
        ],
        "refused_breaking_changes": refused,
        "dora": _dora([c for c in own if c.kind != "retire"], _days(since_ms, until_ms)),
    }


def _dora(changes: list[Change], days: float) -> dict[str, Any]:
    used = [c for c in changes if c.used or c.rolled_back]
    failed = [c for c in used if c.failed]
    return {
        "change_frequency_per_day": round(len(changes) / days, 3),
        "changes": len(changes),
        "lead_time": _ms(_median(c.lead_ms for c in changes if c.lead_ms is not None)),
        "change_failure_rate": round(len(failed) / len(used), 3) if used else None,
        "failed_changes": len(failed),
        "changes_with_runs": len(used),
        "time_to_restore": _ms(_median(c.restored_ms - c.first_failure_ms for c in failed if c.restored_ms)),
    }


def _per_contract(changes: list[Change], days: float) -> dict[str, Any]:
    """The DORA keys per contract the team owns: its versions, and agent changes serving it."""
    by_contract: dict[str, list[Change]] = defaultdict(list)
    for c in changes:
        if c.kind == "contract":
            by_contract[c.name].append(c)
        elif c.kind == "agent":
            for contract in sorted({name for name, _ in c.serves}):  # one change, whatever majors
                by_contract[contract].append(c)
    return {name: _dora(listed, days) for name, listed in sorted(by_contract.items())}


def last_changes(
    entries: list[AuditRecord],
    runs: list[RunRecord],
    workflows: list[WorkflowRecord],
    triggers: dict[str, list[str]],
    count: int,
    team: str = "",
    *,
    serving: Serving | None = None,
) -> list[dict[str, Any]]:
    """``autonomy changes --last N``: the newest N changes, each with the teams involved, what
    others had to do or approve, the time to production use, and whether it was a bottleneck."""
    changes = _changes(entries, serving)
    _follow(changes, runs)
    refusals = _refusals(entries)
    callers = {wf.name: wf for wf in workflows}
    interventions = [e for e in entries if e.platform_intervention]
    overrides = [e for e in entries if e.action in OVERRIDE_ACTIONS]
    listed = []
    mine = [c for c in changes if not team or c.team == team]
    for c in sorted(mine, key=lambda c: c.entry.id, reverse=True)[:count]:
        teams = {c.team}
        others: list[str] = []
        waited = 0
        before = _waited_for(c, refusals)
        if before:
            for r in before:
                teams |= set(r["consumer_teams"])
                others += [f"team {w['team']} changed workflow {w['workflow']} first" for w in r["consumers"]]
            if before:
                waited = c.entry.at_ms - before[0]["at_ms"]
        elif c.kind == "workflow" and c.name in callers:
            teams |= {x.split("/", 1)[0] for x in callers[c.name].contracts}
            teams |= {x.split("/", 1)[0] for x in triggers.get(c.name, [])}
        if c.entry.platform_intervention:
            others.append("made by the platform (admin)")
        others += [
            f"platform intervention: {e.action} {e.object}"
            for e in interventions
            if e is not c.entry and e.object == c.entry.object
        ]
        others += [
            f"override of {e.details.get('rule', '')} by {e.actor}: {e.details.get('reason', '')}"
            for e in overrides
            if e.object.split(" ")[0] == c.entry.object.split(" ")[0] or e.object == c.entry.object
        ]
        lead = c.lead_ms
        total = (waited + lead) if lead is not None else None
        reasons = []
        if len(teams) > BOTTLENECK_TEAMS:
            reasons.append(f"{len(teams)} teams involved (more than {BOTTLENECK_TEAMS})")
        if total is not None and total > BOTTLENECK_MS:
            reasons.append(f"{duration_text(total)} to production use (more than 7d)")
        listed.append(
            {
                "at_ms": c.entry.at_ms,
                "kind": c.kind,
                "change": c.entry.object,
                # an agent change: the contracts (contract@major) whose binding it changed
                "bindings": [f"{contract}@{major}" for contract, major in c.serves],
                "team": c.team,
                "actor": c.entry.actor,
                "teams_involved": sorted(teams),
                "by_others": others,
                "waited_for_others": _ms(waited) if waited else None,
                "time_to_production": _ms(lead),
                "in_production": lead is not None,
                "bottleneck": bool(reasons),
                "bottleneck_reasons": reasons,
            }
        )
    return listed
