"""The autonomy report over a period whose runs retention deleted, on both stores: what is kept is
bounded by days x keys (coordinator/store/run_days.py), not by runs, and the report's figures are
those the runs gave (docs/governance.md, "When retention deletes runs").

Four days of a workflow run every 30 minutes, with a contract version, a workflow version and an
agent configuration changed in the middle of days, failures right after two of those changes and
now and then otherwise. The report is computed from the stored runs, then every run is deleted and
it is computed again from what retention kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.registry import autonomy
from coordinator.store.base import Store
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import AuditRecord, Changes, RunFilter, RunRecord
from coordinator.store.sqlite import SqliteStore
from tests.coordinator.store_conformance import run_record

DAY = autonomy.DAY_MS
HOUR = 3_600_000
T0 = 10 * DAY
CHANGES = [
    (T0, "contract.register", "payments/charge@1.0.0", {}),
    (T0 + 1, "workflow.register", "payments/checkout v1", {}),
    (T0 + 2, "agent.register", "payments-1", {"serves": ["payments/charge@1"], "fingerprints": {"payments/charge@1": "a"}}),
    (T0 + DAY + 3 * HOUR, "contract.register", "payments/charge@1.1.0", {}),
    (T0 + 2 * DAY + 5 * HOUR, "workflow.register", "payments/checkout v2", {}),
    (T0 + 2 * DAY + 9 * HOUR, "agent.register", "payments-2", {"serves": ["payments/charge@1"], "fingerprints": {"payments/charge@1": "b"}}),
]  # fmt: skip


def _history() -> tuple[list[AuditRecord], list[RunRecord]]:
    entries = [
        AuditRecord(
            at_ms=at, actor="payments", action=action, object=obj, owner_team="payments", details=details
        )
        for at, action, obj, details in CHANGES
    ]
    runs = []
    failing_after = {CHANGES[3][0]: 2, CHANGES[5][0]: 1}  # the first runs after these fail
    created = T0 + 10 * 60_000
    i = 0
    while created < T0 + 4 * DAY:
        changed = max(at for at, *_ in CHANGES if at <= created)
        failed = failing_after.get(changed, 0) > 0 or i % 17 == 5
        if changed in failing_after:
            failing_after[changed] -= 1
        runs.append(
            run_record(
                f"r{i}",
                status="failed" if failed else "succeeded",
                created_ms=created,
                finished_ms=created + 60_000 + (i % 7) * 1_000,
                workflow_version=2 if created >= CHANGES[4][0] else 1,
                pinned={"payments/charge": "1.1.0" if created >= CHANGES[3][0] else "1.0.0"},
            )
        )
        created += 30 * 60_000
        i += 1
    return entries, runs


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    [team] = report["teams"]
    return {"time_to_deploy": team["time_to_deploy"], "dora": team["dora"], "contracts": team["contracts"]}


def _without_restore(figures: dict[str, Any]) -> dict[str, Any]:
    def strip(dora: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dora.items() if k != "time_to_restore"}

    return {
        "time_to_deploy": figures["time_to_deploy"],
        "dora": strip(figures["dora"]),
        "contracts": {name: strip(d) for name, d in figures["contracts"].items()},
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "coordinator.db")
    else:
        opened = PostgresStore(request.getfixturevalue("pg_database").schema_url(), pool_size=2)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_report_over_deleted_runs_is_the_one_the_runs_gave_from_rows_bounded_by_days(
    store: Store,
) -> None:
    entries, runs = _history()
    await store.apply(Changes(runs=runs, audit=entries))
    audit = await store.list_audit("", 0, 100)  # with their ids
    since, now = T0 - DAY, T0 + 5 * DAY

    def report(over: list[RunRecord]) -> dict[str, Any]:
        return _figures(autonomy.build_report(audit, over, [], {}, since, now, "payments"))

    def last(over: list[RunRecord]) -> list[Any]:
        return [
            (c["change"], c["time_to_production"]) for c in autonomy.last_changes(audit, over, [], {}, 10)
        ]

    stored = await store.list_runs(RunFilter(limit=1000))
    assert len(stored) == len(runs) == 192
    before, changes_before = report(stored), last(stored)
    assert before["dora"]["failed_changes"] >= 3 and before["dora"]["changes_with_runs"] == 6

    while await store.purge_runs(now, 50):
        pass
    assert await store.list_runs(RunFilter()) == []
    kept = await store.list_run_digests(since, 0, 1000)
    # Bounded by days x keys, not by runs: a part for each day and each change within it (the
    # first day starts with three: 7), as many of failed runs, and the successful ones cut again
    # at the first failure of each part of failed runs (7 more); each read as at most two runs.
    parts = 7
    assert len(kept) <= 2 * (parts + parts + 2 * parts) < len(runs), len(kept)

    after = report(kept)
    assert _without_restore(after) == _without_restore(before)
    assert last(kept) == changes_before
    # A restore is found no earlier than it was (here: the same, as no success came between
    # a failure and the success before it within one part of a day).
    assert after["dora"]["time_to_restore"] == before["dora"]["time_to_restore"]
