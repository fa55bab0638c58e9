"""Policies as data, end to end through the real coordinator and the ``accord`` command
(docs/governance.md): advisory rules warn and never block; required rules block and accept an
override with a reason when overridable, recorded in the audit log; ``policy apply --dry-run``
lists the registered objects that would now get findings; a team's own advisory rules cover only
its namespace; an agent's registration is checked too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError
from tests.support.scenario import contract

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
rules:
  - id: contract-owner
    applies_to: contract
    level: require
    overridable: true
    message: "contracts need an owner to ask"
    condition: {required: [owner], properties: {owner: {required: [contact]}}}
  - id: sensitive-names
    applies_to: contract
    level: require
    message: "fields named like secrets must be sensitive"
    condition:
      properties:
        facts:
          properties:
            fields:
              items:
                if: {properties: {name: {pattern: "(?i)card|token|password|secret"}}}
                then: {properties: {sensitive: {const: true}}}
  - id: max-retry-attempts
    applies_to: contract
    level: advise
    message: "at most 5 attempts"
    condition: {properties: {retry: {properties: {max_attempts: {maximum: 5}}}}}
  - id: max-teams-called
    applies_to: workflow
    level: advise
    message: "call at most 1 other team"
    condition: {properties: {facts: {properties: {other_teams: {maxItems: 1}}}}}
  - id: agent-concurrency
    applies_to: agent
    level: require
    overridable: true
    message: "at most 8 tasks at once per agent"
    condition: {properties: {concurrency: {maximum: 8}}}
"""

OWNED = contract("payments/charge", "1.0.0", extra="owner: {contact: '#payments'}\n")
UNOWNED = contract("payments/refund", "1.0.0", extra="retry: {max_attempts: 9}\n")
SECRET_FIELD = contract(
    "payments/tokenize",
    "1.0.0",
    input_props="{order_id: {type: string}, card_number: {type: string}}",
    extra="owner: {contact: '#payments'}\n",
)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def _apply(coordinator, tmp_path: Path, text: str = POLICY, *extra: str, token: str | None = None):
    return await coordinator.acli(
        "policy", "apply", _write(tmp_path, "policy.yaml", text), *extra, token=token
    )


async def _audit(coordinator) -> list[pb.AuditEntry]:
    async with coordinator.client() as admin:
        return list((await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries)


async def test_advisory_rules_warn_naming_rule_file_line_and_field_and_never_block(coordinator, tmp_path):
    payments = await coordinator.create_team("payments")
    applied = await _apply(coordinator, tmp_path)
    assert applied.returncode == 0, applied.stderr
    file = _write(
        tmp_path, "refund.yaml", UNOWNED + 'overrides: {contract-owner: "owner named next sprint"}\n'
    )
    registered = await coordinator.acli("contract", "register", file, token=payments)
    assert registered.returncode == 0, registered.stderr
    assert "registered payments/refund@1.0.0" in registered.stdout
    # contract() puts retry on line 12 of the file
    assert (
        f"{file}:12: retry.max_attempts: advise max-retry-attempts: at most 5 attempts" in registered.stderr
    )
    newer = _write(tmp_path, "refund2.yaml", UNOWNED.replace("1.0.0", "1.0.1"))
    as_json = await coordinator.acli("contract", "register", "--dry-run", "--json", newer, token=payments)
    findings = json.loads(as_json.stdout)["policy_findings"]
    assert [(f["rule"], f["level"], f["field"], f["line"], f["override_reason"]) for f in findings] == [
        ("contract-owner", "require", "owner", 1, ""),  # a dry run shows each verdict
        ("max-retry-attempts", "advise", "retry.max_attempts", 12, ""),
    ]


async def test_a_required_rule_blocks_and_accepts_an_override_with_a_reason_which_is_recorded(
    coordinator, tmp_path
):
    payments = await coordinator.create_team("payments")
    shipping = await coordinator.create_team("shipping")
    assert (await _apply(coordinator, tmp_path)).returncode == 0
    file = _write(tmp_path, "refund.yaml", UNOWNED)

    refused = await coordinator.acli("contract", "register", file, token=payments)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "payments/refund@1.0.0 does not satisfy 1 required policy rule(s)" in refused.stderr
    assert (
        f"{file}:1: owner: require contract-owner: contracts need an owner to ask (is required but missing)"
        in (refused.stderr)
    )
    assert '--override contract-owner="reason"' in refused.stderr
    async with coordinator.client(payments) as client:
        assert list((await client.coordinator.ListContracts(pb.ListContractsRequest())).contracts) == []
    refusals = [e for e in await _audit(coordinator) if e.action == "contract.register.refused"]
    assert [e.object for e in refusals] == ["payments/refund@1.0.0"]

    dry = await coordinator.acli("contract", "register", "--dry-run", file, token=payments)
    assert dry.returncode == 1 and "would be REFUSED" in dry.stdout

    unknown = await coordinator.acli("contract", "register", file, "--override", "speed=fast", token=payments)
    assert unknown.returncode == 2 and "override 'speed': no such policy rule" in unknown.stderr
    empty = await coordinator.acli(
        "contract", "register", file, "--override", "contract-owner=", token=payments
    )
    assert empty.returncode == 2 and "expected RULE=" in empty.stderr

    overridden = await coordinator.acli(
        "contract", "register", file, "--override", "contract-owner=owner named next sprint", token=payments
    )
    assert overridden.returncode == 0, overridden.stderr
    assert "overridden: owner named next sprint" in overridden.stdout

    # Not overridable: refused even with a reason.
    secret = _write(tmp_path, "tokenize.yaml", SECRET_FIELD)
    still = await coordinator.acli(
        "contract", "register", secret, "--override", "sensitive-names=trust me", token=payments
    )
    assert still.returncode == 1
    assert "input.properties.card_number: require sensitive-names" in still.stderr
    assert "this rule cannot be overridden" in still.stderr
    fixed = _write(tmp_path, "tokenize.yaml", SECRET_FIELD + "sensitive: [input.card_number]\n")
    assert (await coordinator.acli("contract", "register", fixed, token=payments)).returncode == 0

    # In the file, for what registers unattended.
    in_file = _write(
        tmp_path,
        "void.yaml",
        contract("payments/void", "1.0.0") + 'overrides: {contract-owner: "legacy import"}\n',
    )
    assert (await coordinator.acli("contract", "register", in_file, token=payments)).returncode == 0

    listed = json.loads((await coordinator.acli("policy", "overrides", "--json")).stdout)
    assert [
        (e["actor"], e["owner_team"], e["action"], e["object"], e["details"]["rule"], e["details"]["reason"],
         e["details"]["source"])
        for e in listed
    ] == [
        ("payments", "payments", "policy.override", "payments/refund@1.0.0", "contract-owner",
         "owner named next sprint", "request"),
        ("payments", "payments", "policy.override", "payments/void@1.0.0", "contract-owner", "legacy import", "file"),
    ]  # fmt: skip
    own = json.loads((await coordinator.acli("policy", "overrides", "--json", token=payments)).stdout)
    assert len(own) == 2
    assert json.loads((await coordinator.acli("policy", "overrides", "--json", token=shipping)).stdout) == []
    other = await coordinator.acli("policy", "overrides", "--team", "payments", token=shipping)
    assert other.returncode == 3 and "only its own overrides" in other.stderr


async def test_dry_run_lists_the_registered_violators_and_applies_nothing(coordinator, tmp_path):
    payments = await coordinator.create_team("payments")
    shipping = await coordinator.create_team("shipping")
    crm = await coordinator.create_team("crm")
    for token, text in (
        (payments, OWNED),
        (payments, UNOWNED),
        (crm, contract("crm/notify", "1.0.0", extra="owner: {contact: crm@example.com}\n")),
    ):
        assert (await coordinator.register_contract(token, text)).registered
    workflow = """\
workflow: shipping/ship
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge: {contract: payments/charge@^1, input: {order_id: "${input.order_id}"}}
  notify: {contract: crm/notify@^1, input: {order_id: "${input.order_id}"}}
"""
    assert (await coordinator.register_workflow(shipping, workflow)).registered

    dry = await _apply(coordinator, tmp_path, POLICY, "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    lines = dry.stdout.splitlines()
    assert (
        "contract.yaml:1: owner: REQUIRED contract-owner: contracts need an owner to ask (is required but missing)"
        in lines
    )
    assert any(
        line.startswith("workflow.yaml:3: steps: advice max-teams-called") and "is too long" in line
        for line in lines
    ), lines
    assert lines[-1].endswith(
        "2 registered object(s) would get findings, 1 of them a block (nothing applied)"
    )
    as_json = json.loads((await _apply(coordinator, tmp_path, POLICY, "--dry-run", "--json")).stdout)
    assert as_json["applied"] is False
    assert sorted({(f["object"], f["rule"]) for f in as_json["findings"]}) == [
        ("payments/refund@1.0.0", "contract-owner"),
        ("payments/refund@1.0.0", "max-retry-attempts"),
        ("shipping/ship", "max-teams-called"),
    ]
    assert json.loads((await coordinator.acli("policy", "list", "--json")).stdout) == []

    assert (await _apply(coordinator, tmp_path)).returncode == 0
    rules = json.loads((await coordinator.acli("policy", "list", "--json", token=crm)).stdout)
    assert [(r["id"], r["level"], r["scope"]) for r in rules][:2] == [
        ("contract-owner", "require", "platform"),
        ("sensitive-names", "require", "platform"),
    ]
    shown = await coordinator.acli("policy", "show", "agent-concurrency")
    assert shown.returncode == 0 and '"maximum": 8' in shown.stdout
    missing = await coordinator.acli("policy", "show", "nope")
    assert missing.returncode == 2 and "no policy rule 'nope'" in missing.stderr
    applied = [e for e in await _audit(coordinator) if e.action == "policy.apply"]
    assert [(e.actor, e.owner_team, e.platform_intervention) for e in applied] == [("admin", "", False)]


async def test_a_team_applies_its_own_advisory_rules_for_its_namespace_only(coordinator, tmp_path):
    shipping = await coordinator.create_team("shipping")
    payments = await coordinator.create_team("payments")
    team_file = (REPO / "examples" / "policies" / "team-shipping.yaml").read_text()
    not_platform = await _apply(coordinator, tmp_path, team_file, token=shipping)
    assert not_platform.returncode == 3 and "--team shipping" in not_platform.stderr
    not_theirs = await _apply(coordinator, tmp_path, team_file, "--team", "payments", token=shipping)
    assert not_theirs.returncode == 3
    blocking = team_file.replace("level: advise", "level: require")
    bad = await _apply(coordinator, tmp_path, blocking, "--team", "shipping", token=shipping)
    assert bad.returncode == 2 and "policy.yaml:9" in bad.stderr and "level must be 'advise'" in bad.stderr

    assert (
        await _apply(coordinator, tmp_path, team_file, "--team", "shipping", token=shipping)
    ).returncode == 0
    ours = await coordinator.register_contract(shipping, contract("shipping/book"))
    assert ours.registered
    assert [(f.rule, f.scope) for f in ours.policy_findings] == [("shipping-idempotent", "shipping")]
    theirs = await coordinator.register_contract(payments, contract("payments/charge"))
    assert theirs.registered and list(theirs.policy_findings) == []
    # A team's own act on its own namespace is no platform intervention.
    applied = [e for e in await _audit(coordinator) if e.action == "policy.apply"]
    assert [(e.actor, e.owner_team, e.platform_intervention) for e in applied] == [
        ("shipping", "shipping", False)
    ]


async def test_an_agent_registration_is_checked_and_may_override_from_its_config(coordinator, tmp_path):
    payments = await coordinator.create_team("payments")
    assert (await _apply(coordinator, tmp_path)).returncode == 0
    assert (await coordinator.register_contract(payments, OWNED)).registered
    request = agent_pb.RegisterAgentRequest(
        agent_id="payments-1",
        bindings=[agent_pb.Binding(contract="payments/charge", major=1)],
        concurrency=32,
    )
    async with coordinator.client(payments) as client:
        with pytest.raises(FailedPreconditionError) as refused:
            await client.agent.RegisterAgent(request)
        assert "agent payments-1 does not satisfy 1 required policy rule(s)" in str(refused.value)
        assert "agent payments-1: concurrency: require agent-concurrency" in str(refused.value)
        request.overrides["agent-concurrency"] = "batch agent, measured"
        answer = await client.agent.RegisterAgent(request)
        assert answer.poll_wait_ms > 0
        again = await client.agent.RegisterAgent(request)  # after an outage: no second override entry
        assert again.poll_wait_ms > 0
    overrides = json.loads((await coordinator.acli("policy", "overrides", "--json")).stdout)
    assert [(e["object"], e["details"]["rule"], e["details"]["kind"]) for e in overrides] == [
        ("agent payments-1", "agent-concurrency", "agent")
    ]


async def test_a_bad_policy_file_is_refused_naming_line_and_field(coordinator, tmp_path):
    bad = """\
rules:
  - id: Bad_Id
    applies_to: contract
    level: must
    message: x
    condition: {}
  - id: typo
    applies_to: contract
    level: advise
    message: x
    conditon: {}
"""
    result = await _apply(coordinator, tmp_path, bad)
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr
    assert "policy.yaml:2: rules[0].id" in err
    assert "policy.yaml:4: rules[0].level" in err and "expected one of advise, require" in err
    assert "unknown key 'conditon'" in err and "did you mean 'condition'?" in err
    lookahead = POLICY.replace("maximum: 5}", 'maximum: 5, pattern: "(?=x)"}')
    result = await _apply(coordinator, tmp_path, lookahead)
    assert result.returncode == 2
    assert (
        "policy.yaml:24: rules[2].condition.properties.retry.properties.max_attempts.pattern" in result.stderr
    )
    assert "cannot run on RE2" in result.stderr
    assert json.loads((await coordinator.acli("policy", "list", "--json")).stdout) == []
    refused = await coordinator.acli("policy", "apply", str(tmp_path / "missing.yaml"))
    assert refused.returncode == 2 and "cannot read the file" in refused.stderr


@pytest.mark.postgres
async def test_policies_overrides_and_the_report_on_postgresql(pg_database, tmp_path):
    """The store-dependent parts on PostgreSQL: the policy file kept, an override recorded and
    listed, the autonomy report read from the audit log."""
    from tests.support.coordinator import CoordinatorProcess

    coordinator = CoordinatorProcess.start(tmp_path / "home", "--store", pg_database.url, "--store-pool", "4")
    try:
        payments = await coordinator.create_team("payments")
        assert (await _apply(coordinator, tmp_path)).returncode == 0
        file = _write(tmp_path, "refund.yaml", UNOWNED)
        assert (await coordinator.acli("contract", "register", file, token=payments)).returncode == 1
        ok = await coordinator.acli(
            "contract", "register", file, "--override", "contract-owner=later", token=payments
        )
        assert ok.returncode == 0, ok.stderr
        listed = json.loads((await coordinator.acli("policy", "overrides", "--json", token=payments)).stdout)
        assert [(e["details"]["rule"], e["details"]["reason"]) for e in listed] == [
            ("contract-owner", "later")
        ]
        rules = json.loads((await coordinator.acli("policy", "list", "--json")).stdout)
        assert len(rules) == 5
        report = json.loads((await coordinator.acli("autonomy", "report", "--json", token=payments)).stdout)
        [team] = report["teams"]
        assert team["changes"]["contract_versions"] == 1 and team["changes"]["overrides"] == 1
    finally:
        coordinator.kill9()


WF_POLICY = """\
rules:
  - id: workflow-description
    applies_to: workflow
    level: require
    overridable: true
    message: "workflows say what they are for"
    condition: {required: [description]}
  - id: workflow-output
    applies_to: workflow
    level: advise
    message: "workflows should name their output"
    condition: {required: [output]}
"""
FLOW_V1 = """\
workflow: payments/pay
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge: {contract: payments/charge@^1, input: {order_id: "${input.order_id}"}}
"""
FLOW_V2 = (
    FLOW_V1.replace("steps:", "description: pays an order\nsteps:")
    + 'output: {ref: "${steps.charge.output.ref}"}\n'
)


async def test_a_rollback_is_checked_against_the_policies_as_they_are_now(coordinator, tmp_path):
    """Rolling back to a version registered before a rule was applied is checked like a
    registration: a required rule refuses it unless overridden (recorded), advice warns."""
    payments = await coordinator.create_team("payments")
    assert (await coordinator.register_contract(payments, OWNED)).registered
    assert (await coordinator.register_workflow(payments, FLOW_V1)).registered
    assert (await coordinator.register_workflow(payments, FLOW_V2)).registered
    assert (await _apply(coordinator, tmp_path, WF_POLICY)).returncode == 0

    refused = await coordinator.acli("workflow", "rollback", "payments/pay", "--to", "1", token=payments)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "require workflow-description: workflows say what they are for" in refused.stderr
    assert '--override workflow-description="reason"' in refused.stderr
    async with coordinator.client(payments) as client:
        current = (await client.coordinator.GetWorkflow(pb.GetWorkflowRequest(name="payments/pay"))).workflow
    assert current.version == 2  # nothing rolled back
    audit = await _audit(coordinator)
    assert [e.object for e in audit if e.action == "workflow.register.refused"] == ["payments/pay"]
    assert not any(e.action == "workflow.rollback" for e in audit)

    unknown = await coordinator.acli(
        "workflow", "rollback", "payments/pay", "--to", "1", "--override", "speed=fast", token=payments
    )
    assert unknown.returncode == 2 and "override 'speed': no such policy rule" in unknown.stderr

    overridden = await coordinator.acli(
        "workflow", "rollback", "payments/pay", "--to", "1", "--json",
        "--override", "workflow-description=v2 double-charges; rolling back (INC-7)", token=payments,
    )  # fmt: skip
    assert overridden.returncode == 0, overridden.stderr
    result = json.loads(overridden.stdout)
    assert (result["version"], result["registered"]) == (3, True)
    verdicts = {f["rule"]: (f["level"], f["override_reason"]) for f in result["policy_findings"]}
    assert verdicts == {
        "workflow-description": ("require", "v2 double-charges; rolling back (INC-7)"),
        "workflow-output": ("advise", ""),  # advice warns, never blocks
    }
    assert any("advise workflow-output" in w for w in result["warnings"])
    listed = json.loads((await coordinator.acli("policy", "overrides", "--json", token=payments)).stdout)
    assert [
        (e["actor"], e["object"], e["details"]["rule"], e["details"]["reason"], e["details"]["kind"])
        for e in listed
    ] == [
        (
            "payments",
            "payments/pay v3",
            "workflow-description",
            "v2 double-charges; rolling back (INC-7)",
            "workflow",
        )
    ]
    assert [e.object for e in await _audit(coordinator) if e.action == "workflow.rollback"] == [
        "payments/pay v3"
    ]


async def test_a_rollback_to_a_version_calling_a_retired_major_says_so(coordinator, tmp_path):
    payments = await coordinator.create_team("payments")
    assert (await coordinator.register_contract(payments, OWNED)).registered
    assert (await coordinator.register_workflow(payments, FLOW_V1)).registered
    assert (await coordinator.register_contract(payments, OWNED.replace("1.0.0", "2.0.0"))).registered
    assert (await coordinator.register_workflow(payments, FLOW_V1.replace("@^1", "@^2"))).registered
    assert (await coordinator.acli("contract", "retire", "payments/charge@1", token=payments)).returncode == 0
    refused = await coordinator.acli("workflow", "rollback", "payments/pay", "--to", "1", token=payments)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (
        "step 'charge' calls payments/charge@^1, but every version it matches is retired (1.0.0): "
        "call payments/charge@^2 (newest in service: 2.0.0) instead"
    ) in refused.stderr
    assert "no registered version matches" not in refused.stderr
