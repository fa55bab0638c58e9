"""coordinator.registry.autonomy on a synthetic history: what makes a change a bottleneck, a
rollback counted as a failed change, figures per contract."""

from __future__ import annotations

from coordinator.registry import autonomy
from coordinator.store.records import AuditRecord, RunRecord, WorkflowRecord

DAY = autonomy.DAY_MS


def _entry(id: int, at: int, action: str, obj: str, team: str, **details: object) -> AuditRecord:
    return AuditRecord(
        at_ms=at, actor=team, action=action, object=obj, owner_team=team, details=dict(details), id=id
    )


def _run(
    run_id: str, workflow: str, version: int, status: str, created: int, finished: int, **pinned: str
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        workflow_version=version,
        team=workflow.split("/")[0],
        status=status,
        input=None,
        created_ms=created,
        trace_id="t",
        span_id="s",
        finished_ms=finished,
        pinned={k.replace("__", "/"): v for k, v in pinned.items()},
    )


def _workflow(name: str, version: int, contracts: tuple[str, ...]) -> WorkflowRecord:
    return WorkflowRecord(
        name=name,
        team=name.split("/")[0],
        version=version,
        description="",
        source_text="",
        source_name="",
        definition_json="{}",
        registered_ms=0,
        registered_by="",
        contracts=contracts,
    )


def test_more_than_two_teams_or_more_than_a_week_is_a_bottleneck() -> None:
    entries = [
        _entry(1, 0, "contract.register.refused", "payments/charge@1.1.0", "payments", problems=[
            "breaks workflow shipping/ship (v1, team shipping), step charge reads fee",
            "breaks workflow crm/tell (v2, team crm), step charge reads fee",
        ]),
        _entry(2, 8 * DAY, "contract.register", "payments/charge@1.1.0", "payments"),
        _entry(3, 8 * DAY, "workflow.register", "shipping/ship v2", "shipping"),
    ]  # fmt: skip
    runs = [_run("r1", "shipping/ship", 2, "succeeded", 8 * DAY + 10, 8 * DAY + 50, payments__charge="1.1.0")]
    changes = autonomy.last_changes(
        entries, runs, [_workflow("shipping/ship", 2, ("payments/charge",))], {}, 5
    )
    contract, workflow = changes[1], changes[0]
    assert contract["teams_involved"] == ["crm", "payments", "shipping"]
    assert contract["waited_for_others"]["ms"] == 8 * DAY
    assert contract["time_to_production"]["ms"] == 50
    assert contract["bottleneck_reasons"] == [
        "3 teams involved (more than 2)",
        "8.0d to production use (more than 7d)",
    ]
    assert workflow["teams_involved"] == ["payments", "shipping"] and not workflow["bottleneck"]


def test_a_rolled_back_workflow_version_is_a_failed_change() -> None:
    entries = [
        _entry(1, 0, "workflow.register", "shipping/ship v1", "shipping"),
        _entry(2, 100, "workflow.register", "shipping/ship v2", "shipping"),
        _entry(3, 200, "workflow.rollback", "shipping/ship v3", "shipping"),
    ]
    runs = [
        _run("r1", "shipping/ship", 1, "succeeded", 10, 20),
        _run("r2", "shipping/ship", 2, "succeeded", 110, 120),
    ]
    report = autonomy.build_report(entries, runs, [], {}, 0, DAY)
    [team] = report["teams"]
    assert team["dora"]["changes_with_runs"] == 2
    assert team["dora"]["failed_changes"] == 1  # v2: rolled back although its run succeeded
    assert set(report["how"]) >= {"change_frequency", "lead_time", "change_failure_rate", "time_to_restore"}
    assert team["dora"]["change_frequency_per_day"] == 3.0
