"""An in-memory ``Source`` for developing the pages and for tests of the web layer alone.

The e2e tests use the real coordinator; this one only feeds shapes identical to ``GrpcSource``'s,
with a deliberately simple scoping (a team sees payloads of its own steps) to exercise the UI's
handling of hidden payloads and refusals.
"""

from __future__ import annotations

import copy
import json
import random
import time
import uuid
from typing import Any

from contracts.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from coordinator.web._source import AuditQuery, JSONDict, Principal, RunQuery

ADMIN_TOKEN = "admin-token"
TOKENS = {"tok-shipping": "shipping", "tok-payments": "payments", "tok-warehouse": "warehouse"}

WORKFLOW_SOURCE = """\
workflow: shipping/order-to-cash
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}"}
  reserve:
    contract: warehouse/reserve-stock@^2
    input: {order_id: "${input.order_id}"}
  ship:
    contract: shipping/create-shipment@^1
    input:
      order_id: "${input.order_id}"
      payment_ref: "${steps.charge.output.payment_ref}"
      items: "${steps.reserve.output.items}"
"""


def _contract(name: str, version: str, **extra: Any) -> JSONDict:
    base: JSONDict = {
        "name": name,
        "team": name.split("/")[0],
        "version": version,
        "ref": f"{name}@{version}",
        "description": f"{name} v{version}",
        "input_schema": {
            "type": "object",
            "required": ["order_id"],
            "properties": {"order_id": {"type": "string"}, "card_token": {"type": "string"}},
        },
        "output_schema": {"type": "object", "properties": {"payment_ref": {"type": "string"}}},
        "timeouts": {"schedule_to_start_ms": 0, "start_to_close_ms": 120000, "heartbeat_ms": 0},
        "retry": {
            "max_attempts": 3,
            "initial_backoff_ms": 1000,
            "backoff_coefficient": 2.0,
            "max_backoff_ms": 0,
            "non_retryable": ["CardDeclined"],
        },
        "idempotent": True,
        "visibility": "public",
        "sensitive": ["input.card_token"],
        "deprecated": None,
        "source_text": f"contract: {name}\nversion: {version}\n",
        "registered_ms": int(time.time() * 1000) - 86400000,
        "registered_by": name.split("/")[0],
    }
    base.update(extra)
    return base


class FakeSource:
    def __init__(self) -> None:
        self.runs: dict[str, JSONDict] = {}
        self.traces: dict[str, JSONDict] = {}
        now = int(time.time() * 1000)
        self.contracts = [
            _contract(
                "payments/charge-card",
                "1.0.0",
                deprecated={"sunset": "2027-03-01", "replacement": "payments/charge-card@2"},
            ),
            _contract(
                "payments/charge-card",
                "1.1.0",
                input_schema={
                    "type": "object",
                    "required": ["order_id", "amount_cents"],
                    "properties": {
                        "order_id": {"type": "string"},
                        "amount_cents": {"type": "integer", "minimum": 1},
                        "card_token": {"type": "string"},
                    },
                },
            ),
            _contract("warehouse/reserve-stock", "2.0.0"),
            _contract("shipping/create-shipment", "1.0.0"),
        ]
        self.workflow = {
            "name": "shipping/order-to-cash",
            "team": "shipping",
            "version": 1,
            "description": "Charge, reserve stock, ship.",
            "source_text": WORKFLOW_SOURCE,
            "definition": {},
            "registered_ms": now - 3600000,
            "registered_by": "shipping",
        }
        self.audit = [
            {
                "id": i + 1,
                "at_ms": now - (30 - i) * 60_000,
                "actor": actor,
                "action": action,
                "object": obj,
                "owner_team": owner,
                "platform_intervention": actor == "admin" and bool(owner) and action != "team.create",
                "details": details,
            }
            for i, (actor, action, obj, owner, details) in enumerate(
                [
                    ("admin", "team.create", "payments", "payments", {}),
                    ("payments", "contract.register", "payments/charge-card@1.0.0", "payments", {}),
                    ("payments", "contract.register.refused", "payments/charge-card@1.2.0", "payments",
                     {"reason": "payments/charge-card@1.2.0 is not compatible with major 1"}),
                    ("shipping", "run.start", "run-failed-1", "shipping", {"workflow": "shipping/order-to-cash"}),
                    ("admin", "contract.deprecate", "payments/charge-card@1", "payments", {"sunset": "2027-03-01"}),
                ]
            )
        ]  # fmt: skip
        self.add_failed_run("run-failed-1", now - 60_000)
        self.add_big_run("run-big-500", now - 120_000, spans=500)
        for i in range(120):
            self.add_simple_run(
                f"run-{i:04d}", now - 200_000 - i * 60_000, "succeeded" if i % 7 else "failed"
            )

    # ---------- data builders

    def _run(self, run_id: str, created_ms: int, status: str) -> JSONDict:
        return {
            "run_id": run_id,
            "workflow": "shipping/order-to-cash",
            "workflow_version": 1,
            "team": "shipping",
            "status": status,
            "input": {"order_id": "o-1", "amount_cents": 1299},
            "output": None,
            "payload_hidden": False,
            "idempotency_key": f"order-{run_id}",
            "error": None,
            "created_ms": created_ms,
            "finished_ms": created_ms + 4200 if status not in ("running", "pending") else 0,
            "trace_id": uuid.uuid4().hex,
            "pinned_versions": {
                "payments/charge-card": "1.1.0",
                "warehouse/reserve-stock": "2.0.0",
                "shipping/create-shipment": "1.0.0",
            },
            "started_by": "shipping",
            "steps": [],
        }

    def _step(
        self,
        step_id: str,
        contract: str,
        version: str,
        status: str,
        start: int,
        end: int,
        attempts: list[JSONDict],
        **kw: Any,
    ) -> JSONDict:
        step = {
            "id": step_id,
            "contract": contract,
            "contract_version": version,
            "team": contract.split("/")[0],
            "status": status,
            "waiting_reason": "",
            "idempotency_key": f"k-{step_id}",
            "input": {"order_id": "o-1", "card_token": "***"},
            "output": {"payment_ref": "p-77"} if status == "succeeded" else None,
            "payload_hidden": False,
            "attempts": attempts,
            "error": None,
            "started_ms": start,
            "finished_ms": end,
            "next_attempt_ms": 0,
        }
        step.update(kw)
        return step

    def add_simple_run(self, run_id: str, created: int, status: str) -> None:
        run = self._run(run_id, created, status)
        if status == "failed":
            run["error"] = {
                "type": "CardDeclined",
                "message": "card expired",
                "retryable": False,
                "details": {},
            }
        run["steps"] = [
            self._step("charge", "payments/charge-card", "1.1.0", status, created, created + 1000, [])
        ]
        self.runs[run_id] = run
        self.traces[run_id] = {"trace_id": run["trace_id"], "spans": []}

    def add_failed_run(self, run_id: str, t: int) -> None:
        run = self._run(run_id, t, "failed")
        error = {
            "type": "EngineError",
            "message": "Jenkins build #41 failed: label printer offline",
            "retryable": True,
            "details": {
                "engine": "jenkins",
                "build_url": "http://jenkins.local/job/create-shipment/41/",
                "console_tail": "Started by remote\n+ ./print-label.sh\nERROR: printer lp0 offline\nFinished: FAILURE",
            },
        }
        run["error"] = error
        a = lambda n, st, s, e, err=None: {  # noqa: E731
            "attempt_id": f"{run_id}-a{n}-{s}",
            "number": n,
            "status": st,
            "agent_id": "agent-1",
            "scheduled_ms": s,
            "started_ms": s,
            "finished_ms": e,
            "error": err,
        }
        run["steps"] = [
            self._step(
                "charge",
                "payments/charge-card",
                "1.1.0",
                "succeeded",
                t,
                t + 800,
                [a(1, "succeeded", t, t + 800)],
            ),
            self._step(
                "reserve",
                "warehouse/reserve-stock",
                "2.0.0",
                "succeeded",
                t,
                t + 1200,
                [a(1, "succeeded", t, t + 1200)],
                payload_hidden=True,
                input=None,
                output=None,
            ),
            self._step(
                "ship",
                "shipping/create-shipment",
                "1.0.0",
                "failed",
                t + 1300,
                t + 4200,
                [a(1, "failed", t + 1300, t + 2000, error), a(2, "failed", t + 3000, t + 4200, error)],
                error=error,
            ),
        ]
        self.runs[run_id] = run
        ns = lambda ms: ms * 1_000_000  # noqa: E731
        spans = [
            self._span("r", "", "run shipping/order-to-cash", "", ns(t), ns(t + 4200), "error"),
            self._span("s1", "r", "step charge", "payments", ns(t), ns(t + 800), "ok", step="charge"),
            self._span(
                "s1a",
                "s1",
                "attempt 1 payments/charge-card@1.1.0",
                "payments",
                ns(t + 10),
                ns(t + 790),
                "ok",
                step="charge",
            ),
            self._span("s2", "r", "step reserve", "warehouse", ns(t), ns(t + 1200), "ok", step="reserve"),
            self._span(
                "s2a",
                "s2",
                "warehouse/reserve-stock@2.0.0",
                "warehouse",
                ns(t + 20),
                ns(t + 1190),
                "ok",
                redacted=True,
            ),
            self._span("s3", "r", "step ship", "shipping", ns(t + 1300), ns(t + 4200), "error", step="ship"),
            self._span(
                "s3a",
                "s3",
                "attempt 1 shipping/create-shipment@1.0.0",
                "shipping",
                ns(t + 1300),
                ns(t + 2000),
                "error",
                step="ship",
                msg="EngineError: label printer offline",
            ),
            self._span(
                "s3b",
                "s3",
                "attempt 2 shipping/create-shipment@1.0.0",
                "shipping",
                ns(t + 3000),
                ns(t + 4200),
                "error",
                step="ship",
                msg="EngineError: label printer offline",
            ),
            self._span(
                "s3b1",
                "s3b",
                "jenkins build create-shipment #41",
                "shipping",
                ns(t + 3050),
                ns(t + 4150),
                "error",
                msg="printer lp0 offline",
            ),
        ]
        self.traces[run_id] = {"trace_id": run["trace_id"], "spans": spans}

    def add_big_run(self, run_id: str, t: int, spans: int) -> None:
        run = self._run(run_id, t, "succeeded")
        rnd = random.Random(7)
        ns = lambda ms: int(ms * 1_000_000)  # noqa: E731
        out = [self._span("root", "", "run shipping/order-to-cash", "", ns(t), ns(t + 30_000), "ok")]
        teams = ["payments", "warehouse", "shipping"]
        steps = []
        for i in range(spans - 1):
            team = teams[i % 3]
            start = t + rnd.uniform(0, 28_000)
            dur = rnd.uniform(5, 2000)
            parent = "root" if i < 20 else f"x{rnd.randrange(0, i)}"
            out.append(
                self._span(
                    f"x{i}",
                    parent,
                    f"step item[{i}]",
                    team,
                    ns(start),
                    ns(start + dur),
                    "ok",
                    step=f"item[{i}]",
                )
            )
            if i < 30:
                steps.append(
                    self._step(
                        f"item[{i}]", f"{team}/work", "1.0.0", "succeeded", int(start), int(start + dur), []
                    )
                )
        run["steps"] = steps
        self.runs[run_id] = run
        self.traces[run_id] = {"trace_id": run["trace_id"], "spans": out}

    def _span(
        self,
        sid: str,
        parent: str,
        name: str,
        team: str,
        start: int,
        end: int,
        status: str,
        *,
        step: str = "",
        msg: str = "",
        redacted: bool = False,
    ) -> JSONDict:
        return {
            "span_id": sid,
            "parent_span_id": parent,
            "name": name,
            "team": team,
            "service": f"{team or 'accord'}-agent" if team else "accord-coordinator",
            "kind": "internal",
            "start_ns": start,
            "end_ns": end,
            "status": status,
            "status_message": msg,
            "attributes": {} if redacted else {"accord.step_id": step} if step else {},
            "redacted": redacted,
            "events": [],
            "links": [],
        }

    # ---------- Source

    async def whoami(self, token: str) -> Principal:
        if token == ADMIN_TOKEN:
            return Principal(team="", admin=True)
        if token in TOKENS:
            return Principal(team=TOKENS[token], admin=False)
        raise UnauthenticatedError(message="unknown token")

    def _scoped(self, principal: Principal, run: JSONDict) -> JSONDict:
        run = copy.deepcopy(run)
        if principal.admin:
            return run
        for step in run["steps"]:
            if step["team"] != principal.team:
                step["input"] = step["output"] = None
                step["payload_hidden"] = True
        return run

    async def list_runs(self, token: str, query: RunQuery) -> list[JSONDict]:
        principal = await self.whoami(token)
        runs = sorted(self.runs.values(), key=lambda r: (r["created_ms"], r["run_id"]), reverse=True)
        out = []
        for run in runs:
            if query.status and run["status"] != query.status:
                continue
            if query.workflow and run["workflow"] != query.workflow:
                continue
            if query.created_before_ms and run["created_ms"] >= query.created_before_ms:
                continue
            if query.created_after_ms and run["created_ms"] < query.created_after_ms:
                continue
            if query.query and query.query not in run["run_id"] and query.query not in run["idempotency_key"]:
                continue
            out.append(self._scoped(principal, run))
            if len(out) >= query.limit:
                break
        return out

    async def get_run(self, token: str, run_id: str) -> JSONDict:
        principal = await self.whoami(token)
        if run_id not in self.runs:
            raise NotFoundError(message=f"no run {run_id}")
        return self._scoped(principal, self.runs[run_id])

    async def get_event(self, token: str, event_id: str) -> JSONDict:
        await self.whoami(token)
        raise NotFoundError(message=f"event '{event_id}' does not exist")

    async def get_trace(self, token: str, run_id: str) -> JSONDict:
        await self.get_run(token, run_id)
        return copy.deepcopy(self.traces[run_id])

    async def cancel_run(self, token: str, run_id: str, reason: str, request_id: str) -> JSONDict:
        principal = await self.whoami(token)
        run = self.runs[run_id]
        if not principal.admin and principal.team != run["team"]:
            raise PermissionDeniedError(message="not your run")
        run["status"] = "cancelled"
        return self._scoped(principal, run)

    async def answer_step(
        self, token: str, run_id: str, step_id: str, approve: bool, comment: str, request_id: str
    ) -> JSONDict:
        principal = await self.whoami(token)
        run = self.runs[run_id]
        step = next(s for s in run["steps"] if s["id"] == step_id)
        step["status"] = "succeeded"
        step["output"] = {"approved": approve, "by": principal.team or "admin", "comment": comment}
        return self._scoped(principal, run)

    async def start_run(
        self, token: str, workflow: str, input_json: str, request_id: str, rerun_of: str = ""
    ) -> JSONDict:
        principal = await self.whoami(token)
        run = self._run(f"run-{uuid.uuid4().hex[:8]}", int(time.time() * 1000), "running")
        run["input"] = copy.deepcopy(self.runs[rerun_of]["input"]) if rerun_of else json.loads(input_json)
        self.runs[run["run_id"]] = run
        self.traces[run["run_id"]] = {"trace_id": run["trace_id"], "spans": []}
        return {"run": self._scoped(principal, run), "created": True}

    async def list_contracts(
        self, token: str, team: str = "", name_prefix: str = "", all_versions: bool = True
    ) -> list[JSONDict]:
        await self.whoami(token)
        return [
            copy.deepcopy(c)
            for c in self.contracts
            if (not team or c["team"] == team) and c["name"].startswith(name_prefix)
        ]

    async def get_contract(self, token: str, ref: str) -> JSONDict:
        await self.whoami(token)
        for c in self.contracts:
            if c["ref"] == ref:
                return {
                    "contract": copy.deepcopy(c),
                    "versions": [x["version"] for x in self.contracts if x["name"] == c["name"]],
                }
        raise NotFoundError(message=f"no contract {ref}")

    async def diff_contracts(self, token: str, old_ref: str, new_ref: str) -> JSONDict:
        await self.whoami(token)
        return {
            "findings": [
                {
                    "pointer": "/input/required/1",
                    "message": "input now requires amount_cents: older callers do not send it",
                    "breaking": True,
                },
                {
                    "pointer": "/input/properties/amount_cents",
                    "message": "new input field amount_cents",
                    "breaking": False,
                },
            ],
            "breaking": True,
            "same_major": True,
        }

    async def contract_consumers(self, token: str, ref: str) -> list[JSONDict]:
        await self.whoami(token)
        if ref.startswith("payments/charge-card"):
            return [
                {
                    "workflow": "shipping/order-to-cash",
                    "workflow_version": 1,
                    "team": "shipping",
                    "step": "charge",
                    "field": "output.payment_ref",
                    "message": "",
                }
            ]
        return []

    async def list_notices(self, token: str, team: str = "") -> list[JSONDict]:
        """shipping's order-to-cash calls the deprecated payments/charge-card@1 (as the fake's
        contracts say): the caller's notice, seen by shipping and the admin."""
        principal = await self.whoami(token)
        if not principal.admin and principal.team != "shipping":
            return []
        return [
            {
                "kind": "deprecated",
                "contract": "payments/charge-card@1.2.0",
                "sunset": "2027-03-01",
                "replacement": "payments/charge-card@2",
                "past_sunset": False,
                "workflow": "shipping/order-to-cash",
                "workflow_version": 1,
                "step": "charge",
                "team": "shipping",
                "runs_last_30_days": 1,
                "message": "step charge of shipping/order-to-cash v1 calls payments/charge-card@1.2.0 is deprecated",
            }
        ]

    async def list_workflows(self, token: str, team: str = "") -> list[JSONDict]:
        await self.whoami(token)
        return [copy.deepcopy(self.workflow)]

    async def get_workflow(self, token: str, name: str, version: int = 0) -> JSONDict:
        await self.whoami(token)
        return copy.deepcopy(self.workflow)

    async def list_teams(self, token: str) -> list[str]:
        await self.whoami(token)
        return ["crm", "payments", "shipping", "warehouse"]

    async def autonomy(self, token: str, team: str, since_ms: int, last: int, by: str = "week") -> JSONDict:
        """An empty period: the figures themselves are the real coordinator's (tests/web/test_autonomy_page.py)."""
        await self.whoami(token)
        report = {
            "since_ms": since_ms,
            "until_ms": since_ms,
            "truncated": None,
            "by": by,
            "periods": [],
            "teams": [],
            "how": {},
        }
        return {"report": report, "changes": []}

    async def list_audit(self, token: str, query: AuditQuery) -> list[JSONDict]:
        principal = await self.whoami(token)
        team = query.team
        if not principal.admin:
            if team and team != principal.team:
                raise PermissionDeniedError(
                    message=f"team {principal.team} may read only its own audit entries, not team {team}'s"
                )
            team = principal.team
        entries = [
            e
            for e in reversed(self.audit)
            if (not team or team in (e["owner_team"], e["actor"]))
            and e["at_ms"] >= query.since_ms
            and (not query.before_id or e["id"] < query.before_id)
        ]
        return copy.deepcopy(entries[: query.limit])
