"""What the autonomy report keeps of the runs retention deletes: daily aggregates
(docs/governance.md, "When retention deletes runs").

The report needs of a run only what ran (workflow and version, the contract versions it pinned),
how it ended and when it was created and finished: per change, the first successful and the first
failed run that uses it, and the next successful run after a failure. So a deleted run is folded
into one row of ``run_days`` per

    (part of a UTC day, workflow, workflow version, pinned contract versions, status)

holding how many runs, and the earliest and latest creation and end times among them. What is
kept for an old period is bounded by days x keys, not by runs.

A day is cut into parts at the changes a run's figures depend on: the registration of a version of
its workflow or of a contract it pinned, and an agent's registration serving a contract major it
pinned (``SEGMENT_ACTIONS``; the audit log holds them, kept as long as these rows). A part starts
at the day's start or at the latest such change before its runs were created, so every run of a
part was created after the same changes and before the same next one. Then the earliest end of a
part's successful (failed) runs is exactly the end of the first successful (failed) run of that
part that uses a change, and the per-change figures (time to deploy, whether a change failed, and
so the medians over changes) are those the runs themselves gave.

The time to restore runs from a change's first failure to the next success of the same workflow or
contract: the first failure of a change is the earliest end of one part's failed runs, so the
successful runs are cut once more at those (``after_failure_ms``: the latest earliest end of a
part's failed runs sharing the workflow or a pinned contract, before they ended). The earliest end
of the successes after such a cut is then the next success after that failure, exactly. Runs are
deleted the earliest ended first, so a failure is folded before the successes after it. (Two
coordinators on one PostgreSQL purging at once can fold a success before a failure ended just
before it; the restore found is then that part's earliest success after the failure's, later by
at most the part's span.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DAY_MS = 86_400_000
#: The audit entries that cut a day into parts (those the autonomy report counts as changes runs use).
SEGMENT_ACTIONS = ("contract.register", "workflow.register", "workflow.rollback", "agent.register")
#: ``run_days``' columns in the order ``DayRow.values`` gives them.
COLUMNS = (
    "day_ms",
    "since_ms",
    "workflow",
    "workflow_version",
    "status",
    "pinned_json",
    "team",
    "after_failure_ms",
    "runs",
    "min_created_ms",
    "max_created_ms",
    "min_finished_ms",
    "max_finished_ms",
)
#: The columns that say which row a run is folded into (the table's unique key).
KEY = ("since_ms", "workflow", "workflow_version", "status", "pinned_json", "after_failure_ms")
#: What ``fold`` needs of the failed rows already there (``failures_sql``): their key and earliest end.
FAILURE_COLUMNS = ("since_ms", "workflow", "workflow_version", "status", "pinned_json", "min_finished_ms")


@dataclass(frozen=True)
class Finished:
    """A finished run being deleted: what its row in ``run_days`` is made of."""

    workflow: str
    workflow_version: int
    team: str
    status: str
    created_ms: int
    finished_ms: int
    pinned: dict[str, str]

    @staticmethod
    def of(
        workflow: str,
        version: int,
        team: str,
        status: str,
        created_ms: int,
        finished_ms: int,
        pinned_json: str | None,
    ) -> Finished:
        pinned = json.loads(pinned_json or "{}") or {}
        return Finished(
            str(workflow),
            int(version),
            str(team),
            str(status),
            int(created_ms),
            int(finished_ms),
            {str(k): str(v) for k, v in pinned.items()},
        )


@dataclass
class DayRow:
    day_ms: int
    since_ms: int
    workflow: str
    workflow_version: int
    status: str
    pinned_json: str
    team: str
    after_failure_ms: int
    runs: int
    min_created_ms: int
    max_created_ms: int
    min_finished_ms: int
    max_finished_ms: int

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


class Changes:
    """The times of the changes that cut days into parts, by what they concern: ``("workflow",
    name)``, ``("contract", name)`` and ``("serves", "contract@major")``."""

    def __init__(self, entries: Iterable[tuple[Any, ...]]) -> None:
        """``entries``: (at_ms, action, object, details_json) of audit entries of
        ``SEGMENT_ACTIONS``."""
        self.times: dict[tuple[str, str], list[int]] = {}
        for at_ms, action, obj, details_json in entries:
            for key in _concerns(str(action), str(obj), details_json):
                self.times.setdefault(key, []).append(int(at_ms))

    def latest(self, run: Finished, not_after_ms: int) -> int:
        """The time of the latest change concerning ``run`` at or before ``not_after_ms`` (0: none)."""
        keys = [("workflow", run.workflow)]
        for contract, version in run.pinned.items():
            keys.append(("contract", contract))
            keys.append(("serves", f"{contract}@{version.split('.', 1)[0]}"))
        return max((t for key in keys for t in self.times.get(key, ()) if t <= not_after_ms), default=0)


def _concerns(action: str, obj: str, details_json: Any) -> list[tuple[str, str]]:
    if action in ("workflow.register", "workflow.rollback"):
        return [("workflow", obj.rsplit(" v", 1)[0])]  # "team/name vN"
    if action == "contract.register":
        return [("contract", obj.partition("@")[0])]  # "team/name@1.2.0"
    if action == "agent.register":
        try:
            details = json.loads(details_json or "{}")
        except ValueError:
            return []
        return [("serves", str(key)) for key in details.get("serves") or []]  # "team/name@1"
    return []


def fold(
    runs: Iterable[Finished], changes: Changes, failures: Iterable[tuple[Any, ...]] = ()
) -> list[DayRow]:
    """The rows ``runs`` add to ``run_days``, one per key (to be added to rows already there:
    counts summed, earliest and latest times kept). ``failures``: the failed rows already there
    that ended first within the runs' window (``failures_sql``), as ``FAILURE_COLUMNS``."""
    # The earliest end of each part's failed runs: where the successes sharing an object are cut.
    first_failure: dict[tuple[Any, ...], int] = {}
    objects: dict[tuple[Any, ...], set[str]] = {}
    for since, workflow, version, status, pinned, ended in failures:
        key = (int(since), str(workflow), int(version), str(status), str(pinned), 0)
        first_failure[key] = min(int(ended), first_failure.get(key, int(ended)))
        objects[key] = _objects(str(workflow), json.loads(pinned or "{}"))
    rows: dict[tuple[Any, ...], DayRow] = {}
    for run in sorted(runs, key=lambda r: r.finished_ms):
        day = run.created_ms - run.created_ms % DAY_MS
        since = max(day, changes.latest(run, run.created_ms))
        pinned = json.dumps(run.pinned, sort_keys=True, separators=(",", ":"))
        after = 0
        if run.status == "succeeded":
            mine = _objects(run.workflow, run.pinned)
            after = max(
                (
                    ended
                    for key, ended in first_failure.items()
                    if since <= ended <= run.finished_ms and objects[key] & mine
                ),
                default=0,
            )
        key = (since, run.workflow, run.workflow_version, run.status, pinned, after)
        if run.status == "failed" and key not in first_failure:
            first_failure[key] = run.finished_ms
            objects[key] = _objects(run.workflow, run.pinned)
        row = rows.get(key)
        if row is None:
            rows[key] = DayRow(
                day,
                since,
                run.workflow,
                run.workflow_version,
                run.status,
                pinned,
                run.team,
                after,
                1,
                run.created_ms,
                run.created_ms,
                run.finished_ms,
                run.finished_ms,
            )
            continue
        row.runs += 1
        row.min_created_ms = min(row.min_created_ms, run.created_ms)
        row.max_created_ms = max(row.max_created_ms, run.created_ms)
        row.min_finished_ms = min(row.min_finished_ms, run.finished_ms)
        row.max_finished_ms = max(row.max_finished_ms, run.finished_ms)
    return list(rows.values())


def _objects(workflow: str, pinned: dict[str, Any]) -> set[str]:
    """What a run's restore is measured on: its workflow and the contracts it pinned."""
    return {f"workflow {workflow}", *(f"contract {name}" for name in pinned)}


def failures_sql(placeholder: str) -> str:
    """The failed rows whose earliest end falls in a window (arguments: from, to)."""
    return (
        f"SELECT {', '.join(FAILURE_COLUMNS)} FROM run_days WHERE status = 'failed'"
        f" AND min_finished_ms BETWEEN {placeholder} AND {placeholder}"
    )


def changes_window(runs: list[Finished]) -> tuple[int, int]:
    """The times the changes that may cut ``runs``' days fall in: from the start of the earliest
    run's day to the latest creation."""
    first = min(r.created_ms for r in runs)
    return first - first % DAY_MS, max(r.created_ms for r in runs)


def failures_window(runs: list[Finished]) -> tuple[int, int]:
    """The earliest ends of failed rows that may cut ``runs``' successes, or be the rows their
    failures join: from the start of the earliest run's day to the latest end."""
    return changes_window(runs)[0], max(r.finished_ms for r in runs)


def representatives_sql(placeholder: str, greatest: str, newest_first: bool) -> str:
    """``Store.list_run_digests``' query: each ``run_days`` row as the runs the autonomy report
    reads, no payloads: one with the part's earliest creation and earliest end, and (when it holds
    more than one run) one with its latest creation and latest end. A part that began before the
    period asked for (``created_after_ms``) counts from it. Arguments: created_after_ms three
    times, then limit, offset."""
    p = placeholder
    columns = "workflow, workflow_version, team, status"
    order = "created_ms DESC, run_id DESC" if newest_first else "created_ms, run_id"
    return (
        f"SELECT run_id, {columns}, created_ms, finished_ms, pinned_json FROM ("
        f"SELECT 'deleted-' || id || '-first' AS run_id, {columns},"
        f" {greatest}(min_created_ms, {p}) AS created_ms, min_finished_ms AS finished_ms, pinned_json"
        f" FROM run_days WHERE max_created_ms >= {p}"
        " UNION ALL"
        f" SELECT 'deleted-' || id || '-last' AS run_id, {columns}, max_created_ms AS created_ms,"
        f" max_finished_ms AS finished_ms, pinned_json FROM run_days WHERE max_created_ms >= {p} AND runs > 1"
        f") AS deleted ORDER BY {order} LIMIT {p} OFFSET {p}"
    )
