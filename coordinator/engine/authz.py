"""Who may do what to runs, attempts and agents: every check of the engine, in one place.

The rules: a team starts, cancels and re-runs only its own workflows' runs (the admin any, as a
platform intervention); it sees a run it takes part in; it may call another team's contract only
if that contract is public; its agents serve only its own contracts and report only on attempts
of its own contracts; an agent id belongs to the team that registered it. Each refusal names the
owner, so the caller knows whom to ask.
"""

from __future__ import annotations

from contracts.errors import FailedPreconditionError, PermissionDeniedError
from contracts.model import Contract, WaitSpec
from coordinator.principal import Principal
from coordinator.store.records import AgentRecord, AttemptRecord, Binding, RunRecord, WorkflowRecord


def may_start(principal: Principal, workflow: WorkflowRecord) -> None:
    if not principal.owns(workflow.team):
        raise PermissionDeniedError(
            f"workflow {workflow.name} is owned by team {workflow.team}; only that team may start it"
        )


def may_call(workflow: WorkflowRecord, step_id: str, contract: Contract) -> None:
    if contract.visibility == "team" and contract.team != workflow.team:
        raise PermissionDeniedError(
            f"step {step_id}: {contract.ref} has visibility 'team' and is owned by team "
            f"{contract.team}; only that team's workflows may call it"
        )


def may_control(principal: Principal, run: RunRecord, verb: str) -> None:
    """``verb``: what the caller wants to do, e.g. "cancel" or "re-run"."""
    if not principal.owns(run.team):
        raise PermissionDeniedError(
            f"run {run.run_id} belongs to workflow {run.workflow} of team {run.team}; "
            f"only that team may {verb} it"
        )


def may_answer(principal: Principal, run: RunRecord, step_id: str, wait: WaitSpec) -> None:
    """A waiting step is answered by a team it names or by the workflow's owner (the admin may,
    as a platform intervention)."""
    if principal.owns(run.team) or principal.team in wait.by:
        return
    allowed = ", ".join(dict.fromkeys((*wait.by, run.team)))
    raise PermissionDeniedError(
        f"step {step_id} of run {run.run_id} waits for {wait.describe()}; only team(s) {allowed} "
        f"may answer it, not team {principal.team}"
    )


def may_schedule(principal: Principal, workflow: str, verb: str) -> None:
    """A workflow's schedules are paused, resumed and triggered by its team (or the admin)."""
    team = workflow.split("/", 1)[0]
    if not principal.owns(team):
        raise PermissionDeniedError(
            f"workflow {workflow} is owned by team {team}; only that team may {verb} its schedules"
        )


def may_see(principal: Principal, run: RunRecord) -> None:
    if not principal.admin and principal.team not in run.involved_teams:
        raise PermissionDeniedError(
            f"run {run.run_id} belongs to workflow {run.workflow} of team {run.team}, and team "
            f"{principal.team} takes no part in it"
        )


def may_serve(team: str, bindings: tuple[Binding, ...]) -> None:
    for binding in bindings:
        owner = binding.contract.split("/", 1)[0]
        if owner != team:
            raise PermissionDeniedError(
                f"contract {binding.contract} is owned by team {owner}; team {team} may serve only its own contracts"
            )


def may_act_as(principal: Principal, agent_id: str, agent: AgentRecord | None) -> None:
    """Refuse another team's agent id (an unknown one is fine: e.g. not registered again since a
    restart)."""
    if agent is not None and not principal.owns(agent.team):
        raise PermissionDeniedError(
            f"agent {agent_id} belongs to team {agent.team}; team {principal.team} may not act as it"
        )


def registered_agent(principal: Principal, agent_id: str, agent: AgentRecord | None) -> AgentRecord:
    """The caller's own registered agent ``agent_id`` (polling needs a registration)."""
    if agent is None:
        raise FailedPreconditionError(f"agent {agent_id} is not registered; call RegisterAgent first")
    if not principal.owns(agent.team):
        raise PermissionDeniedError(f"agent {agent_id} belongs to team {agent.team}")
    return agent


def may_report(principal: Principal, attempt: AttemptRecord) -> None:
    team = attempt.contract.split("/", 1)[0]
    if not principal.owns(team):
        raise PermissionDeniedError(
            f"attempt {attempt.attempt_id} runs {attempt.contract}, owned by team {team}; "
            "only its agents may report on it"
        )
