"""Where the UI gets its data: the coordinator's API, called with the signed-in user's token.

The UI never reads the store itself. Every call carries the viewer's own token, so whatever the
coordinator's API allows or hides (another team's payloads, sensitive fields, team-only
contracts, who may cancel) the UI allows or hides too: scoping is inherited by construction.

A ``Source`` returns plain JSON-ready dicts (the shapes documented in docs/ui-api.md) and raises
the ``contracts.errors.RemoteError`` subclasses for refused calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: a team, or the admin (``team == ""``)."""

    team: str
    admin: bool

    @property
    def label(self) -> str:
        return "admin" if self.admin else self.team


@dataclass(frozen=True)
class RunQuery:
    """Filters of the run list. Times are unix milliseconds; 0 means "no bound"."""

    workflow: str = ""
    status: str = ""  # pending | running | succeeded | failed | cancelled
    team: str = ""
    created_after_ms: int = 0
    created_before_ms: int = 0
    query: str = ""
    limit: int = 50


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit log. ``since_ms``: entries at or after (unix ms, 0: all);
    ``before_id``: entries older than that one (0: the newest)."""

    team: str = ""
    since_ms: int = 0
    before_id: int = 0
    limit: int = 50


class Source(Protocol):
    """The coordinator API as the UI needs it. ``token`` is the viewer's own token."""

    async def whoami(self, token: str) -> Principal: ...

    async def list_runs(self, token: str, query: RunQuery) -> list[JSONDict]:
        """Runs without steps, newest first (``created_ms`` desc, ``run_id`` desc)."""

    async def get_run(self, token: str, run_id: str) -> JSONDict: ...

    async def get_event(self, token: str, event_id: str) -> JSONDict:
        """``{"event_id", "contract", "contract_version", "team", "published_ms", "source_run",
        "triggered_runs", "delivered_ms", "handled_ms"}`` (no payload: the UI shows what started a
        run, not what it carried)."""

    async def get_trace(self, token: str, run_id: str) -> JSONDict:
        """``{"trace_id": str, "spans": [span, ...]}``, spans scoped to the viewer."""

    async def cancel_run(self, token: str, run_id: str, reason: str, request_id: str) -> JSONDict: ...

    async def answer_step(
        self, token: str, run_id: str, step_id: str, approve: bool, comment: str, request_id: str
    ) -> JSONDict:
        """Approve (or reject) a step waiting for an approval; the run afterwards."""
        ...

    async def start_run(
        self, token: str, workflow: str, input_json: str, request_id: str, rerun_of: str = ""
    ) -> JSONDict:
        """``rerun_of``: start with that run's stored input (``input_json`` empty)."""
        ...

    async def list_contracts(
        self, token: str, team: str = "", name_prefix: str = "", all_versions: bool = True
    ) -> list[JSONDict]: ...

    async def get_contract(self, token: str, ref: str) -> JSONDict:
        """``{"contract": contract, "versions": [str, ...]}``."""

    async def diff_contracts(self, token: str, old_ref: str, new_ref: str) -> JSONDict:
        """``{"findings": [...], "breaking": bool, "same_major": bool}``."""

    async def contract_consumers(self, token: str, ref: str) -> list[JSONDict]: ...

    async def list_notices(self, token: str, team: str = "") -> list[JSONDict]:
        """Deprecations and retirements that concern the viewer's team (the admin: ``team``'s,
        or every team's); the shape of docs/ui-api.md, ``/api/v1/notices``."""

    async def list_workflows(self, token: str, team: str = "") -> list[JSONDict]: ...

    async def get_workflow(self, token: str, name: str, version: int = 0) -> JSONDict: ...

    async def list_teams(self, token: str) -> list[str]: ...

    async def list_agents(self, token: str, team: str = "") -> list[JSONDict]:
        """The registered agents: team, contracts served, version, last heard from, in flight."""
        ...

    async def autonomy(self, token: str, team: str, since_ms: int, last: int, by: str = "week") -> JSONDict:
        """``{"report": ..., "changes": [...]}``: the autonomy report of the period (broken down
        over time ``by`` day, week or month) and the last ``last`` changes (docs/governance.md,
        "The autonomy report")."""

    async def list_audit(self, token: str, query: AuditQuery) -> list[JSONDict]:
        """Audit entries the viewer may read, newest first (``id`` desc)."""
