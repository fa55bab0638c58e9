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


def _agent(id: int, at: int, agent_id: str, team: str, **fingerprints: str) -> AuditRecord:
    """An ``agent.register`` entry as the engine writes it: serves and a fingerprint per binding."""
    keys = {k.replace("__", "/").replace("_at_", "@"): v for k, v in fingerprints.items()}
    return _entry(id, at, "agent.register", agent_id, team, serves=list(keys), fingerprints=keys)


def test_an_agent_restart_or_replica_is_no_change_a_changed_binding_is() -> None:
    """Agent ids are per process (host-pid): what counts is the fingerprint serving a contract."""
    entries = [
        _agent(1, 0, "vm-101", "payments", payments__charge_at_1="aaa", payments__refund_at_1="rrr"),
        _agent(
            2, 100, "vm-102", "payments", payments__charge_at_1="aaa", payments__refund_at_1="rrr"
        ),  # restart
        _agent(
            3, 110, "vm-2-77", "payments", payments__charge_at_1="aaa", payments__refund_at_1="rrr"
        ),  # replica
        _agent(
            4, 200, "vm-103", "payments", payments__charge_at_1="bbb", payments__refund_at_1="rrr"
        ),  # changed
        _agent(
            5, 210, "vm-2-78", "payments", payments__charge_at_1="bbb", payments__refund_at_1="rrr"
        ),  # rollout
        _agent(
            6, 300, "vm-104", "payments", payments__charge_at_1="aaa", payments__refund_at_1="rrr"
        ),  # back
    ]
    runs = [
        _run("r1", "shipping/ship", 1, "succeeded", 120, 130, payments__charge="1.0.0"),
        _run("r2", "shipping/ship", 1, "failed", 220, 230, payments__charge="1.0.0"),
        _run("r3", "shipping/ship", 1, "succeeded", 320, 330, payments__charge="1.0.0"),
    ]
    report = autonomy.build_report(entries, runs, [], {}, 0, DAY)
    [team] = report["teams"]
    assert team["changes"]["agent_binding_changes"] == 3  # first served, bbb, aaa again
    assert team["dora"]["changes_with_runs"] == 3 and team["dora"]["failed_changes"] == 1
    # the change to bbb is followed by the run failing after it, not by those before or after
    assert team["dora"]["time_to_restore"]["ms"] == 330 - 230
    assert team["contracts"]["payments/charge"]["changes"] == 3
    assert team["contracts"]["payments/refund"]["changes"] == 1  # its binding changed once: first served
    listed = autonomy.last_changes(entries, runs, [], {}, 10)
    assert [(c["change"], c["bindings"]) for c in listed] == [
        ("vm-104", ["payments/charge@1"]),
        ("vm-103", ["payments/charge@1"]),
        ("vm-101", ["payments/charge@1", "payments/refund@1"]),
    ]


def test_what_served_before_the_period_is_not_a_change_in_it() -> None:
    earlier = [  # newest first, as the registry reads them
        _agent(2, -5 * DAY, "vm-9", "payments", payments__charge_at_1="aaa"),
        _agent(1, -9 * DAY, "vm-8", "payments", payments__charge_at_1="old"),
    ]
    serving = autonomy.serving_before(earlier)
    assert serving == {("payments", "payments/charge@1"): "aaa"}
    entries = [
        _agent(3, 10, "vm-10", "payments", payments__charge_at_1="aaa"),  # a restart in the period
        _agent(4, 20, "vm-11", "crm", payments__charge_at_1="aaa"),  # another team's: its own first
    ]
    report = autonomy.build_report(entries, [], [], {}, 0, DAY, serving=serving)
    assert {t["team"]: t["changes"]["agent_binding_changes"] for t in report["teams"]} == {
        "crm": 1,
        "payments": 0,
    }


def test_the_figures_over_time_are_those_of_each_period() -> None:
    """A scripted history over three UTC days, by day and by week: each period's figures are
    those of the changes made in it, followed up to the end of the report."""
    monday = 1_704_672_000_000  # 2024-01-08T00:00:00Z, a Monday
    since, until = monday + 6 * 3600 * 1000, monday + 2 * DAY + 12 * 3600 * 1000
    day1, day2, day3 = since + 3600 * 1000, monday + DAY + 3600 * 1000, monday + 2 * DAY + 3600 * 1000
    entries = [
        _entry(1, day1, "contract.register", "payments/charge@1.0.0", "payments"),
        _entry(2, day1 + 10, "workflow.register", "payments/pay v1", "payments"),
        _entry(3, day2, "contract.register", "payments/charge@1.1.0", "payments"),
        _entry(4, day2 + 5, "policy.override", "payments/charge@1.1.0", "payments", rule="r", reason="why"),
        _entry(5, day3, "contract.register", "payments/charge@1.2.0", "payments"),
        _entry(6, day3 + 5, "contract.register.refused", "payments/charge@1.3.0", "payments", problems=[
            "breaks workflow shipping/ship (v1, team shipping), step charge reads fee",
        ]),
    ]  # fmt: skip
    runs = [
        _run("r1", "payments/pay", 1, "succeeded", day1 + 100, day1 + 200, payments__charge="1.0.0"),
        # charge 1.1.0 is first used on day 3: it still counts for day 2, when it was made
        _run("r2", "payments/pay", 1, "failed", day3 - 1000, day3 - 500, payments__charge="1.1.0"),
        _run("r3", "payments/pay", 1, "succeeded", day3 - 400, day3 - 100, payments__charge="1.1.0"),
    ]
    report = autonomy.build_report(entries, runs, [], {}, since, until, by="day")
    assert [(p["label"], p["start_ms"], p["end_ms"]) for p in report["periods"]] == [
        ("2024-01-08", since, monday + DAY),
        ("2024-01-09", monday + DAY, monday + 2 * DAY),
        ("2024-01-10", monday + 2 * DAY, until),
    ]
    [team] = report["teams"]
    first, second, third = team["over_time"]
    assert first["period"] == "2024-01-08"
    assert (first["changes"]["contract_versions"], first["changes"]["workflow_versions"]) == (1, 1)
    assert first["time_to_deploy"]["ms"] == int((day1 + 200 - day1 + day1 + 200 - day1 - 10) / 2)
    # charge 1.0.0 was followed by no failure before 1.1.0; workflow v1 by r2's failure (day 3)
    assert (first["dora"]["failed_changes"], first["dora"]["changes_with_runs"]) == (1, 2)
    assert first["dora"]["change_frequency_per_day"] == round(2 / ((monday + DAY - since) / DAY), 3)
    assert second["changes"]["contract_versions"] == 1 and second["overrides"] == 1
    assert second["dora"]["change_failure_rate"] == 1.0  # r2 failed after 1.1.0, before 1.2.0
    assert second["dora"]["time_to_restore"]["ms"] == 400
    assert second["time_to_deploy"]["ms"] == day3 - 100 - day2
    assert third["changes"]["contract_versions"] == 1 and third["refused_breaking_changes"] == 1
    assert third["dora"]["changes_with_runs"] == 0 and third["time_to_deploy"] is None
    # the periods add up to the whole
    assert (
        sum(p["changes"]["contract_versions"] for p in team["over_time"])
        == team["changes"]["contract_versions"]
    )
    # by week: one period, the window's
    weekly = autonomy.build_report(entries, runs, [], {}, since, until, by="week")
    assert [p["label"] for p in weekly["periods"]] == ["2024-W02"]
    assert weekly["teams"][0]["over_time"][0]["dora"] == weekly["teams"][0]["dora"]


def test_periods_follow_the_utc_calendar() -> None:
    jan31 = 1_706_659_200_000  # 2024-01-31T00:00:00Z, a Wednesday
    starts = autonomy.period_starts(jan31 + 1000, jan31 + 40 * DAY, "month")
    assert [autonomy._label(s, "month") for s in starts] == ["2024-01", "2024-02", "2024-03"]
    weeks = autonomy.period_starts(jan31, jan31 + 14 * DAY, "week")
    assert weeks[1] == jan31 + 5 * DAY  # the next Monday, 2024-02-05
    assert len(weeks) == 3
    assert len(autonomy.period_starts(0, 1000 * DAY, "day")) == autonomy.MAX_PERIODS + 1  # capped
