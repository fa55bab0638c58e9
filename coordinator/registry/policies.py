"""Policies as data, checked at registration (docs/governance.md).

The platform (the admin) applies one policy file; each team may apply its own for its own
namespace, whose rules only advise. At a registration every rule that covers the object is
checked: an ``advise`` finding is a warning and never blocks; a ``require`` finding refuses the
registration unless the rule is ``overridable`` and the request (``--override RULE="reason"``) or
the file (``overrides:``) gives a reason, which is then recorded in the audit log as an override
(``records.POLICY_OVERRIDE_ACTION``, read with the lifecycle's overrides by
``Store.list_overrides``).

Parsing a policy file and checking a rule's JSON Schema against a file run through
:class:`~coordinator.checks.Checks` (in a worker with a time budget when large); conditions are
bounded like contract schemas and match patterns on RE2 (``contracts.policy``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from contracts import lifecycle, policy
from contracts.errors import (
    AccordError,
    FailedPreconditionError,
    FileProblemsError,
    InvalidArgumentError,
    PermissionDeniedError,
)
from contracts.policy import PolicyFinding, Rule, Verdict
from coordinator.checks import Checks
from coordinator.principal import Principal
from coordinator.store.base import Store
from coordinator.store.records import POLICY_OVERRIDE_ACTION, AuditRecord, PolicyRecord

logger = logging.getLogger(__name__)

PLATFORM = ""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PolicyApplication:
    rules: list[Rule]
    # dry run: what the registered contracts, workflows and agents would now get
    findings: list[PolicyFinding] = field(default_factory=list)
    applied: bool = False


def _checked_overrides(overrides: dict[str, str], known: set[str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for rule, reason in overrides.items():
        if rule in lifecycle.OVERRIDABLE:
            raise InvalidArgumentError(
                f"override '{rule}': a run's rule, given when starting a run (accord run --override {rule}=...), "
                "not at registration"
            )
        if rule not in known:
            listing = ", ".join(sorted(known)) or "none are applied"
            raise InvalidArgumentError(f"override '{rule}': no such policy rule; the rules: {listing}")
        checked[rule] = lifecycle.override_reason(rule, reason)
    return checked


class Policies:
    def __init__(self, store: Store, checks: Checks) -> None:
        self._store = store
        self._checks = checks
        # (scope, applied_ms, source_text) -> its rules: stored files are parsed once
        self._parsed: dict[tuple[str, int, str], list[Rule]] = {}
        self._cached: tuple[float, list[PolicyRecord]] | None = None
        self.fresh_s = 1.0

    async def records(self) -> list[PolicyRecord]:
        # Several coordinators may share one store: re-read once the cache is older than fresh_s.
        if self._cached is None or time.monotonic() - self._cached[0] > self.fresh_s:
            self._cached = (time.monotonic(), await self._store.list_policies())
        return self._cached[1]

    async def rules(self, team: str | None = None) -> list[Rule]:
        """Every applied rule (``team``: the platform's and that team's only)."""
        found: list[Rule] = []
        records = await self.records()
        current = {(r.scope, r.applied_ms, r.source_text) for r in records}
        for stale in [key for key in self._parsed if key not in current]:
            del self._parsed[stale]  # a file replaced since: its rules are not asked for again
        for record in records:
            if team is not None and record.scope not in (PLATFORM, team):
                continue
            key = (record.scope, record.applied_ms, record.source_text)
            if key not in self._parsed:
                try:
                    self._parsed[key] = await self._checks.run(
                        f"reading the policy {record.source_name}",
                        len(record.source_text),
                        policy.parse_policy_text,
                        record.source_text,
                        record.source_name,
                        record.scope,
                    )
                except AccordError:
                    # Applied files were checked when applied; a rule that later limits refuse
                    # is left out, not a reason to refuse every registration.
                    logger.exception(
                        "the stored policy %s of scope %r cannot be read", record.source_name, record.scope
                    )
                    self._parsed[key] = []
            found += self._parsed[key]
        return found

    # ---------------- checking a registration ----------------

    async def check_file(
        self,
        kind: str,
        obj: str,
        owner_team: str,
        source_text: str,
        source_name: str,
        facts: tuple[dict[str, Any], dict[str, str]],
        overrides: dict[str, str],
    ) -> Verdict:
        """The verdict of the rules on a contract's or workflow's file (``kind``)."""
        rules = await self.rules(owner_team)
        if not overrides and not any(r.covers(kind, owner_team) for r in rules):
            return Verdict()  # nothing to check: the file is not read again
        findings, file_overrides = await self._checks.run(
            f"checking the policies on {source_name}",
            len(source_text),
            policy.check_text,
            tuple(rules),
            kind,
            obj,
            owner_team,
            source_text,
            source_name,
            facts[0],
            facts[1],
        )
        file_overrides = {k: v for k, v in file_overrides.items() if k not in lifecycle.OVERRIDABLE}
        return self._decide(rules, findings, overrides, file_overrides, source_name)

    async def check_document(
        self, kind: str, obj: str, owner_team: str, what: str, data: dict[str, Any], overrides: dict[str, str]
    ) -> Verdict:
        """The verdict on a registration that is not a file (an agent's): ``data`` is its document."""
        rules = await self.rules(owner_team)
        subject = policy.Subject(kind, obj, owner_team, what, data)
        findings = await self._checks.run(
            f"checking the policies on {what}", len(str(data)), policy.evaluate, tuple(rules), subject
        )
        return self._decide(rules, findings, overrides, {}, what)

    def _decide(
        self,
        rules: list[Rule],
        findings: list[PolicyFinding],
        overrides: dict[str, str],
        file_overrides: dict[str, str],
        where: str,
    ) -> Verdict:
        known = {r.id for r in rules}
        request = _checked_overrides(overrides, known)
        verdict = Verdict()
        for rule_id in file_overrides:
            if rule_id not in known:
                verdict.warnings.append(
                    f"{where}: overrides.{rule_id}: no policy rule has this id (any more); the override is not used"
                )
        fired = {f.rule for f in findings}
        used: dict[str, tuple[str, str]] = {}
        for finding in findings:
            if finding.level == "advise":
                verdict.findings.append(finding)
                verdict.warnings.append(f"policy: {finding}")
                continue
            reason, source = request.get(finding.rule, ""), "request"
            if not reason:
                reason, source = file_overrides.get(finding.rule, ""), "file"
            if reason and finding.overridable:
                verdict.findings.append(replace(finding, override_reason=reason))
                used.setdefault(finding.rule, (reason, source))
                continue
            verdict.findings.append(finding)
            verdict.blocking.append(
                replace(
                    finding, detail=finding.detail + ("; this rule cannot be overridden" if reason else "")
                )
            )
        for rule_id in {**file_overrides, **request}:
            if rule_id in known and rule_id not in fired:
                verdict.warnings.append(f"override {rule_id} not needed: the registration satisfies the rule")
        verdict.used = [(rule, reason, source) for rule, (reason, source) in used.items()]
        return verdict

    async def record_overrides(
        self, principal: Principal, verdict: Verdict, kind: str, obj: str, owner_team: str
    ) -> None:
        """One audit entry per override used by a registration that went through."""
        levels = {f.rule: f.scope for f in verdict.findings}
        for rule, reason, source in verdict.used:
            await self._store.add_audit(
                AuditRecord(
                    at_ms=_now_ms(),
                    actor=principal.actor,
                    action=POLICY_OVERRIDE_ACTION,
                    object=obj,
                    owner_team=owner_team,
                    platform_intervention=principal.intervenes_on(owner_team),
                    details={
                        "rule": rule,
                        "reason": reason,
                        "source": source,
                        "kind": kind,
                        "policy": levels.get(rule) or "platform",
                    },
                )
            )

    # ---------------- applying a policy file ----------------

    async def parse(self, source_text: str, source_name: str, team: str) -> list[Rule]:
        try:
            rules: list[Rule] = await self._checks.run(
                f"reading {source_name}",
                len(source_text),
                policy.parse_policy_text,
                source_text,
                source_name,
                team,
            )
        except FailedPreconditionError:
            raise
        except FileProblemsError as exc:
            lines = [str(p) for p in exc.problems]
            raise InvalidArgumentError(f"{source_name} has {len(lines)} problem(s)", lines) from exc
        except AccordError as exc:
            raise InvalidArgumentError(f"{source_name}: {exc}") from exc
        return rules

    async def apply(
        self, principal: Principal, source_text: str, source_name: str, team: str, dry_run: bool
    ) -> tuple[list[Rule], bool]:
        """Check and (unless ``dry_run``) store a policy file for ``team`` ("" = the platform)."""
        if team and not principal.owns(team):
            raise PermissionDeniedError(
                f"the rules of team {team} are applied by team {team} (or the admin); team {principal.team} "
                f"may apply its own with --team {principal.team}"
            )
        if not team and not principal.admin:
            raise PermissionDeniedError(
                "the platform's policy is applied by the admin; a team applies its own advisory rules "
                f"with --team {principal.team}"
            )
        rules = await self.parse(source_text, source_name, team)
        if dry_run:
            return rules, False
        await self._store.put_policy(
            PolicyRecord(team, source_text, source_name, _now_ms(), principal.actor),
            AuditRecord(
                at_ms=_now_ms(),
                actor=principal.actor,
                action="policy.apply",
                object=source_name,
                owner_team=team,
                platform_intervention=principal.intervenes_on(team),
                details={"rules": [r.id for r in rules], "scope": team or "platform"},
            ),
        )
        self._cached = None
        return rules, True
