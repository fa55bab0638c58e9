"""Contracts and workflows: registration with compatibility and composition checks.

Rules (docs/contracts.md, "Versions and ranges" and "Compatibility rules"; docs/workflows.md,
"What registration checks"): a contract version is immutable; a new version in an existing major
must be compatible with every earlier version of that major and must not break any registered
consumer workflow; a workflow registers only when it type-checks against the registry.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from contracts import compat, composition, limits, regex, versions
from contracts._yaml import MAX_DOCUMENT_BYTES, pointer_to_field
from contracts.errors import (
    AccordError,
    FailedPreconditionError,
    FileProblemsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from contracts.lifecycle import deprecation_warning, sunset_passed, today_utc
from contracts.loader import parse_contract_text, parse_workflow_text
from contracts.model import Contract, Deprecation, RetryPolicy, Timeouts, Workflow
from contracts.policy import PolicyFinding, Verdict, agent_document, contract_facts, workflow_facts
from contracts.policy import Rule as PolicyRule
from contracts.policy import Subject as PolicySubject
from contracts.policy import check_text as check_policy_text
from contracts.policy import evaluate as evaluate_policy
from coordinator.checks import Checks
from coordinator.config import DEFAULT_AUTONOMY_ROWS
from coordinator.principal import Principal
from coordinator.registry import autonomy
from coordinator.registry.policies import Policies
from coordinator.registry.refusals import RefusalBudget
from coordinator.store import codec
from coordinator.store.base import Store
from coordinator.store.records import (
    AgentRecord,
    AuditRecord,
    ContractRecord,
    RequestConflict,
    RunFilter,
    RunRecord,
    WorkflowRecord,
)

logger = logging.getLogger(__name__)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What a refusal's audit entry keeps of the error's lines: enough to say why, bounded.
_REFUSAL_LINES = 5
_REFUSAL_LINE_CHARS = 300
# The most (contract, range) resolutions Registry.resolve keeps (then it starts again).
_RESOLVED_KEPT = 4096


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Finding:
    pointer: str
    message: str
    breaking: bool = True

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}" if self.pointer else self.message


@dataclass(frozen=True)
class ConsumerImpact:
    workflow: str
    workflow_version: int
    team: str
    step: str
    field: str
    message: str = ""
    # ``consumers``: runs of this workflow version that pinned the contract, last 30 days
    runs: int = 0

    def __str__(self) -> str:
        text = (
            f"workflow {self.workflow} (v{self.workflow_version}, team {self.team}), "
            f"step {self.step} reads {self.field}"
        )
        return f"{text}: {self.message}" if self.message else text


@dataclass
class ContractRegistration:
    record: ContractRecord
    findings: list[Finding] = field(default_factory=list)
    broken_consumers: list[ConsumerImpact] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    registered: bool = False
    # What the policies said (docs/governance.md): advisories, overridden and blocking rules.
    policy_findings: list[PolicyFinding] = field(default_factory=list)


@dataclass
class WorkflowRegistration:
    record: WorkflowRecord
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    registered: bool = False
    policy_findings: list[PolicyFinding] = field(default_factory=list)


@dataclass(frozen=True)
class Notice:
    """Something a team should know about a contract it calls or owns (``accord notices``).

    ``kind``: "deprecated" (a workflow of the team calls a deprecated version), "retired" (a
    step's range has no version in service any more), "callers" (a deprecated version the team
    owns is still called, by ``team``)."""

    kind: str
    contract: str
    sunset: str = ""
    replacement: str = ""
    workflow: str = ""
    workflow_version: int = 0
    step: str = ""
    team: str = ""
    runs: int = 0
    past_sunset: bool = False
    message: str = ""


@dataclass
class AutonomyInputs:
    """What an autonomy report is computed from (``Registry._autonomy_inputs``)."""

    entries: list[AuditRecord]  # oldest first
    runs: list[RunRecord]  # stored runs and digests of deleted ones
    workflows: list[WorkflowRecord]  # the newest version of each
    triggers: dict[str, list[str]]  # workflow -> the event contracts that trigger it
    serving: autonomy.Serving  # what served each contract when the period began
    covered_from_ms: int  # the period's start, or later when a limit cut it
    cut_by: str  # which limits cut it ("" when none did)


# How far back ``consumers`` and ``notices`` count runs.
CALLERS_WINDOW_MS = 30 * 24 * 3600 * 1000


def _bad_file(exc: AccordError, source_name: str) -> InvalidArgumentError:
    if isinstance(exc, FileProblemsError):
        lines = [str(p) for p in exc.problems]
        return InvalidArgumentError(f"{source_name} has {len(lines)} problem(s)", lines)
    return InvalidArgumentError(f"{source_name}: {exc}")


class Registry:
    def __init__(
        self, store: Store, refusals: RefusalBudget | None = None, checks: Checks | None = None
    ) -> None:
        self._store = store
        # Parsing, compatibility and composition checks of large inputs run in worker processes
        # with a time budget (coordinator/checks.py); without a coordinator, inline.
        self.checks = checks or Checks(pooled=False)
        self._refusals = refusals or RefusalBudget()
        self.policies = Policies(store, self.checks)
        # Caches of what the store holds, per name, with when they were read: several
        # coordinators may share one store, so a cached list is read again once it is older than
        # ``fresh_s`` (another coordinator's registration is seen within that), and at once when
        # a version or range asked for is not in it.
        self._contracts: dict[str, tuple[float, list[ContractRecord]]] = {}
        self._specs: dict[tuple[str, int], Workflow] = {}
        self._workflows: dict[str, tuple[float, list[WorkflowRecord]]] = {}
        self._disabled: dict[str, tuple[float, int]] = {}
        self.fresh_s = 1.0
        # (name, range) -> (the cached list of versions it was resolved in, the contract chosen):
        # a run's start resolves each contract its workflow calls, and parsing every version in
        # the list each time cost more than the rest of the look-up. Valid while that list is.
        self._resolved: dict[tuple[str, str], tuple[list[ContractRecord], Contract]] = {}
        # The flows of runs (``run_flows``): what they depend on never changes for a run (its
        # workflow version, pinned versions and starting event), so both caches are kept, bounded.
        self._flows_by_key: OrderedDict[tuple[Any, ...], tuple[str, ...]] = OrderedDict()
        self._flow_keys: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self.flow_cache_size = 1024
        # The most audit entries, runs and run digests (each) an autonomy report reads (--autonomy-rows).
        self.autonomy_rows = DEFAULT_AUTONOMY_ROWS

    # ================= lookups (also used by the engine) =================

    async def versions_of(self, name: str, *, reread: bool = False) -> list[ContractRecord]:
        cached = self._contracts.get(name)
        if reread or cached is None or time.monotonic() - cached[0] > self.fresh_s:
            read_at = time.monotonic()
            cached = (read_at, await self._store.contract_versions(name))
            self._contracts[name] = cached
        return cached[1]

    async def contract(self, name: str, version: str) -> Contract | None:
        for reread in (False, True):
            for record in await self.versions_of(name, reread=reread):
                if record.contract.version == version:
                    return record.contract
        return None

    async def resolve(self, name: str, version_range: str) -> Contract | None:
        """The newest version of ``name`` in ``version_range`` that is in service (not retired)."""
        for reread in (False, True):
            listed = await self.versions_of(name, reread=reread)
            known = self._resolved.get((name, version_range))
            if known is not None and known[0] is listed:
                return known[1]
            records = [r for r in listed if not r.retired_ms]
            try:
                chosen = versions.resolve(version_range, [r.contract.version for r in records])
            except AccordError:
                return None
            if chosen is not None:
                contract = next(r.contract for r in records if r.contract.version == chosen)
                if len(self._resolved) >= _RESOLVED_KEPT:
                    self._resolved.clear()
                self._resolved[(name, version_range)] = (listed, contract)
                return contract
        return None

    async def retired_in_range(self, name: str, version_range: str) -> list[ContractRecord]:
        """The retired versions of ``name`` in ``version_range`` (why it resolves to nothing)."""
        found = []
        for record in await self.versions_of(name):
            if not record.retired_ms:
                continue
            try:
                if versions.resolve(version_range, [record.contract.version]) is not None:
                    found.append(record)
            except AccordError:
                return []
        return found

    async def adapter_for(self, name: str, version_range: str) -> Contract | None:
        """The version serving callers of ``version_range`` once every version of it is retired:
        the newest version in service whose ``migrates_from`` names that major (None: none)."""
        retired = await self.retired_in_range(name, version_range)
        if not retired:
            return None
        return self._adapter_of(await self.versions_of(name), retired[-1].contract.major)

    @staticmethod
    def _adapter_of(
        records: list[ContractRecord], major: int, skip: frozenset[str] = frozenset()
    ) -> Contract | None:
        adapters = [
            r.contract
            for r in records
            if not r.retired_ms
            and r.contract.version not in skip
            and r.contract.migrates_from is not None
            and r.contract.migrates_from.major == major
        ]
        return adapters[-1] if adapters else None

    async def workflow_disabled_ms(self, name: str) -> int:
        """When the workflow was disabled (0: it is not); read again once older than ``fresh_s``,
        as every cache here (another coordinator may have disabled it). A cached "disabled" is
        always read again before it refuses anything: a workflow enabled through another
        coordinator a moment ago starts its runs (and its schedules' due times) here at once."""
        cached = self._disabled.get(name)
        if cached is None or cached[1] or time.monotonic() - cached[0] > self.fresh_s:
            read_at = time.monotonic()
            cached = (read_at, await self._store.workflow_disabled_ms(name))
            self._disabled[name] = cached
        return cached[1]

    async def _workflow_versions(self, name: str, *, reread: bool = False) -> list[WorkflowRecord]:
        cached = self._workflows.get(name)
        if reread or cached is None or time.monotonic() - cached[0] > self.fresh_s:
            read_at = time.monotonic()
            cached = (read_at, await self._store.workflow_versions(name))
            self._workflows[name] = cached
        return cached[1]

    async def newest_workflow(self, name: str) -> WorkflowRecord | None:
        records = await self._workflow_versions(name) or await self._workflow_versions(name, reread=True)
        return records[-1] if records else None

    async def workflow_version(self, name: str, version: int) -> WorkflowRecord | None:
        for reread in (False, True):
            for record in await self._workflow_versions(name, reread=reread):
                if record.version == version:
                    return record
        return None

    async def sensitive_flows(self, name: str, version: int) -> tuple[str, ...]:
        """Where sensitive values land in runs of this workflow version (``steps.pay.input.card``,
        ``output.card``), as the composition checker found at registration against the contract
        versions then newest; none for an unknown version or one registered before Accord
        computed them. A run's views use ``run_flows``, which follows the versions it pinned."""
        record = await self.workflow_version(name, version)
        return flows_of(record) if record is not None else ()

    async def run_flows(self, run: RunRecord) -> tuple[str, ...]:
        """Where sensitive values land in ``run`` (``steps.pay.input.card``, ``output.card``):
        the flows of its workflow version computed against the contract versions the run pinned
        and, for a run an event started, that event's sensitive payload fields (an emitter's
        taint, ``EventRecord.sensitive``); joined with the flows stored at registration.

        A contract may mark a field sensitive in a later compatible version than the one the
        workflow was registered against, and a version registered before Accord stored flows has
        none: either way the run's own versions decide. Computed once per (workflow version,
        pinned versions, event fields), off the event loop for a large workflow
        (``checks.run``); a computation that fails (over the check budget) makes every payload
        of the run count as sensitive, never none (docs/concepts.md, "Sensitive data follows
        the data")."""
        key = self._flow_keys.get(run.run_id)
        if key is None:
            event_fields: tuple[str, str, tuple[str, ...]] | None = None
            if run.idempotency_key.startswith("event:"):  # started by a trigger (coordinator/events)
                event = await self._store.get_event(run.idempotency_key[len("event:") :])
                if event is not None:
                    event_fields = (
                        event.contract,
                        event.contract_version,
                        tuple(sorted(set(event.sensitive))),
                    )
            key = (run.workflow, run.workflow_version, tuple(sorted(run.pinned.items())), event_fields)
            self._flow_keys[run.run_id] = key
            while len(self._flow_keys) > self.flow_cache_size * 4:
                self._flow_keys.popitem(last=False)
        else:
            self._flow_keys.move_to_end(run.run_id)
        record = await self.workflow_version(run.workflow, run.workflow_version)
        if record is None:
            return ()
        # A deleted version's number may be registered again: the version is named by when, too.
        full = (*key, record.registered_ms)
        cached = self._flows_by_key.get(full)
        if cached is not None:
            self._flows_by_key.move_to_end(full)
            return cached
        flows = await self._compute_run_flows(run, record, key[3])
        self._flows_by_key[full] = flows
        while len(self._flows_by_key) > self.flow_cache_size:
            self._flows_by_key.popitem(last=False)
        return flows

    async def _compute_run_flows(
        self, run: RunRecord, record: WorkflowRecord, event_fields: tuple[str, str, tuple[str, ...]] | None
    ) -> tuple[str, ...]:
        stored = flows_of(record)
        try:
            spec = self.workflow_spec(record)
        except AccordError:
            return stored
        pinned: dict[str, Contract] = {}
        for name, version in run.pinned.items():
            contract = await self.contract(name, version)
            if contract is not None:
                pinned[name] = contract
        event_sensitive: dict[str, tuple[str, ...]] = {}
        if event_fields is not None:
            name, version, fields = event_fields
            event = await self.contract(name, version)
            if event is not None and name not in pinned:
                pinned[name] = event
            event_sensitive[name] = fields
        catalog = composition.PinnedCatalog(await self._catalog(spec), pinned)
        try:
            result = await self.checks.run(
                f"the sensitive flows of workflow {spec.name} v{record.version}",
                _composition_size(spec, catalog),
                composition.check_workflow,
                spec,
                catalog,
                event_sensitive,
            )
        except Exception as exc:  # over the budget, or a checker fault: redact, never show
            logger.warning(
                "the sensitive flows of %s v%s for run %s could not be computed (%s): every payload of"
                " the run is redacted as sensitive for viewers but the receiving step's team",
                spec.name,
                record.version,
                run.run_id,
                exc,
            )
            everything = {"input", "output"}
            for step_id in spec.steps:
                everything |= {f"steps.{step_id}.input", f"steps.{step_id}.for_each"}
            return tuple(sorted(everything | set(stored)))
        return tuple(sorted(set(stored) | result.sensitive_flows))

    def workflow_spec(self, record: WorkflowRecord) -> Workflow:
        key = (record.name, record.version)
        spec = self._specs.get(key)
        if spec is None:
            spec = parse_workflow_text(record.source_text, record.source_name or record.name, registered=True)
            self._specs[key] = spec
        return spec

    def workflow_triggers(self, record: WorkflowRecord) -> list[str]:
        """The event contracts (team/name) whose events start this registered version, once
        each in file order (shown in list answers, which leave the source text out)."""
        return list(dict.fromkeys(t.on for t in self.workflow_spec(record).triggers))

    async def _catalog(self, spec: Workflow) -> Any:
        """The registered versions of every contract ``spec`` calls, for the composition checker."""
        from contracts.composition import ContractCatalog

        catalog = ContractCatalog()
        for step in spec.calls:
            for record in await self.versions_of(step.contract):
                if not record.retired_ms:  # out of service: no new workflow may call it
                    catalog.add(record.contract)
        for trigger in spec.triggers:
            for record in await self.versions_of(trigger.on):
                catalog.add(record.contract)
        called = {step.contract for step in spec.calls} | {t.on for t in spec.triggers}
        if any(not catalog.versions(name) for name in called):
            # Only on the way to an error: every name, so that a typo gets a "did you mean".
            catalog.note_names(record.contract.name for record in await self._store.list_contracts())
        return catalog

    async def warn_unsupported_patterns(self) -> list[str]:
        """Log one warning listing the registered contracts and workflows whose schemas hold a
        regular expression RE2 cannot run (registered before such patterns were refused): they
        keep working, on Python's backtracking ``re`` (docs/contracts.md, "Regular expressions").
        Returns the list, ``ref field: pattern`` each."""
        found: list[str] = []
        for record in await self._store.list_contracts():
            contract = record.contract
            for side, schema in (("input", contract.input_schema), ("output", contract.output_schema)):
                for where, pattern in limits.patterns(schema, f"/{side}"):
                    if regex.unsupported(pattern) is not None:
                        found.append(f"{contract.ref} {pointer_to_field(where)}: {pattern}")
        for workflow in await self._store.list_workflows():
            try:
                spec = self.workflow_spec(workflow)
            except AccordError:
                continue
            for where, pattern in limits.patterns(spec.input_schema, "/input"):
                if regex.unsupported(pattern) is not None:
                    found.append(
                        f"workflow {workflow.name} v{workflow.version} {pointer_to_field(where)}: {pattern}"
                    )
        if found:
            logger.warning(
                "schema patterns RE2 cannot run (lookaround or backreferences), registered before they "
                "were refused; they run on Python's backtracking re, which a crafted input can stall, "
                "so register versions without them: %s",
                "; ".join(found),
            )
        return found

    # ================= contracts =================

    async def register_contract(
        self,
        principal: Principal,
        source_text: str,
        source_name: str,
        dry_run: bool,
        overrides: dict[str, str] | None = None,
    ) -> ContractRegistration:
        name = source_name or "contract"
        try:
            contract = await self.checks.run(
                f"reading {name}", _parse_size(source_text), parse_contract_text, source_text, name
            )
        except FailedPreconditionError:
            raise
        except AccordError as exc:
            raise _bad_file(exc, name) from exc
        if not principal.owns(contract.team):
            raise await self._refused(
                principal,
                "contract.register.refused",
                contract.ref,
                contract.team,
                PermissionDeniedError(
                    f"contract {contract.name} belongs to team {contract.team}; team {principal.team} "
                    "may register only its own contracts"
                ),
                dry_run,
            )
        record = ContractRecord(contract, now_ms(), principal.actor)
        result = ContractRegistration(record)
        existing = await self.versions_of(contract.name)
        for old in existing:
            if old.contract.version == contract.version:
                if old.contract.source_text == contract.source_text or _same_fields(old.contract, contract):
                    result.record = old
                    result.warnings.append(f"{contract.ref} is already registered with this content")
                    return result
                raise await self._refused(
                    principal,
                    "contract.register.refused",
                    contract.ref,
                    contract.team,
                    FailedPreconditionError(
                        f"{contract.ref} is already registered with different content; versions are "
                        "immutable, so register the change as a new version"
                    ),
                    dry_run,
                )
        if contract.deprecated is not None:
            await self._check_deprecation(
                contract.deprecated.sunset, contract.deprecated.replacement, f"{name}: deprecated."
            )
        if contract.migrates_from is not None:
            await self._check_migration(principal, contract, existing, name, dry_run, result)
        same_major = [r for r in existing if r.contract.major == contract.major]
        newer = [
            r
            for r in same_major
            if codec.version_key(r.contract.version) > codec.version_key(contract.version)
        ]
        if newer:
            result.warnings.append(
                f"{contract.ref} is older than the registered {newer[-1].contract.ref}; runs keep resolving to the newest"
            )
        for other in same_major:
            # A back-filled version (older than ``other``) must be a safe predecessor of it:
            # ``other`` is then the successor, so the check runs old=this, new=other.
            before, after = (contract, other.contract) if other in newer else (other.contract, contract)
            for f in await self.checks.run(
                f"the compatibility check of {contract.ref} against {other.contract.ref}",
                len(before.source_text) + len(after.source_text),
                compat.check_contract_compat,
                before.input_schema,
                before.output_schema,
                after.input_schema,
                after.output_schema,
            ):
                finding = Finding(f.pointer, f"against {other.contract.ref}: {f.message}", f.breaking)
                if finding not in result.findings:
                    result.findings.append(finding)
        result.broken_consumers = await self._consumer_impacts(contract)
        if contract.kind == "event":
            result.broken_consumers += await self._trigger_impacts(contract)
        emits_problems = []
        if contract.emits is not None:
            emits_problems = [f for f in await self._emits_findings(contract) if f.breaking]
        if emits_problems and not dry_run:
            raise await self._refused(
                principal,
                "contract.register.refused",
                contract.ref,
                contract.team,
                InvalidArgumentError(
                    f"{contract.ref}: emits {contract.emits.ref if contract.emits else ''} does not type-check",
                    [str(f) for f in emits_problems],
                ),
                dry_run,
            )
        result.findings += emits_problems
        breaking = [f for f in result.findings if f.breaking]
        verdict = await self.policies.check_file(
            "contract",
            contract.ref,
            contract.team,
            source_text,
            name,
            contract_facts(contract),
            overrides or {},
        )
        result.policy_findings = verdict.findings
        result.warnings += verdict.warnings
        if dry_run:
            return result
        if breaking or result.broken_consumers:
            lines = [str(f) for f in breaking] + [f"breaks {c}" for c in result.broken_consumers]
            headline = f"{contract.ref} is not compatible with major {contract.major}"
            if not breaking:
                headline = f"{contract.ref} would break {len(result.broken_consumers)} consumer(s)"
            raise await self._refused(
                principal,
                "contract.register.refused",
                contract.ref,
                contract.team,
                FailedPreconditionError(
                    f"{headline}; register a breaking change as a new major version ({contract.major + 1}.0.0)",
                    lines,
                ),
                dry_run,
            )
        if verdict.blocking:
            raise await self._refused(
                principal,
                "contract.register.refused",
                contract.ref,
                contract.team,
                verdict.refusal(contract.ref),
                dry_run,
            )
        await self._store.add_contract(
            record,
            AuditRecord(
                at_ms=record.registered_ms,
                actor=principal.actor,
                action="contract.register",
                object=contract.ref,
                owner_team=contract.team,
                platform_intervention=principal.intervenes_on(contract.team),
            ),
        )
        self._contracts.pop(contract.name, None)
        result.registered = True
        await self._record_overrides(principal, verdict, "contract", contract.ref, contract.team)
        return result

    async def _record_overrides(
        self, principal: Principal, verdict: Verdict, kind: str, obj: str, owner_team: str
    ) -> None:
        # After the registration's own commit: a store that fails here loses the override's
        # entry, not the registration, and the caller is told the registration went through.
        try:
            await self.policies.record_overrides(principal, verdict, kind, obj, owner_team)
        except Exception:
            logger.exception("could not write the audit entries of the overrides used registering %s", obj)

    async def _check_migration(
        self,
        principal: Principal,
        contract: Contract,
        existing: list[ContractRecord],
        name: str,
        dry_run: bool,
        result: ContractRegistration,
    ) -> None:
        """Type-check ``migrates_from`` against the old major's newest version and ``contract``
        (contracts.migration); refused (INVALID_ARGUMENT) with every finding's line and field."""
        migration = contract.migrates_from
        assert migration is not None
        old = [r.contract for r in existing if r.contract.major == migration.major]
        if not old:
            raise InvalidArgumentError(
                f"{name}: migrates_from.contract: no version of {migration.ref} is registered, so there is "
                "nothing to adapt from; register the adapter once the old major exists, or leave it out"
            )
        findings = await self.checks.run(
            f"the type-check of the migrates_from mappings of {contract.ref}",
            len(contract.source_text) + len(old[-1].source_text),
            _migration_findings,
            contract,
            old[-1],
        )
        for f in findings:
            where = f"{name}:{f.line}: " if f.line else f"{name}: "
            result.findings.append(Finding(f.field, where + f.message, f.breaking))
        breaking = [f for f in findings if f.breaking]
        if breaking and not dry_run:
            raise await self._refused(
                principal,
                "contract.register.refused",
                contract.ref,
                contract.team,
                InvalidArgumentError(
                    f"{name}: the migrates_from mappings of {contract.ref} do not type-check against "
                    f"{old[-1].ref} (old) and {contract.ref} (new)",
                    [(f"{name}:{f.line}: " if f.line else f"{name}: ") + f.message for f in breaking],
                ),
                dry_run,
            )

    async def _refused(
        self,
        principal: Principal,
        action: str,
        obj: str,
        owner_team: str,
        error: PermissionDeniedError | FailedPreconditionError | InvalidArgumentError,
        dry_run: bool,
    ) -> AccordError:
        """``error``, to raise, once its audit entry is written: who tried to register what, and
        why it was refused, in short. A dry run asked only what would happen and is not an
        entry; nor is a refusal over the actor's budget (``RefusalBudget``: counted, and the
        count goes with its next entry). A store that fails to take the entry does not change
        the answer: the caller still learns why it was refused."""
        if dry_run:
            return error
        admitted, left_out = self._refusals.admit(principal.actor)
        if not admitted:
            return error
        details: dict[str, Any] = {"reason": error.message[:_REFUSAL_LINE_CHARS]}
        if error.details:
            details["problems"] = [line[:_REFUSAL_LINE_CHARS] for line in error.details[:_REFUSAL_LINES]]
            details["problem_count"] = len(error.details)
        if left_out:
            details["not_logged_before"] = left_out
        entry = AuditRecord(
            at_ms=now_ms(),
            actor=principal.actor,
            action=action,
            object=obj,
            owner_team=owner_team,
            platform_intervention=principal.intervenes_on(owner_team),
            details=details,
        )
        try:
            await self._store.add_audit(entry)
        except RequestConflict:
            pass  # another call applied this request meanwhile: answered as it was (api.once)
        except Exception:
            logger.exception("could not write the audit entry of a refused registration of %s", obj)
        return error

    async def _emits_findings(self, contract: Contract) -> list[Finding]:
        """``emits:`` names a registered event contract of the team, and its payload mapping
        type-checks against the newest version of that major."""
        assert contract.emits is not None
        emits = contract.emits
        event = await self.resolve(emits.event, f"^{emits.major}")
        if event is None:
            registered = [r.contract.version for r in await self.versions_of(emits.event)]
            listing = f" (registered: {', '.join(registered)})" if registered else ""
            return [
                Finding(
                    "/emits/event",
                    f"emits {emits.ref}, but no version of it is registered{listing}; register the"
                    " event contract (kind: event) first",
                )
            ]
        if event.kind != "event":
            return [Finding("/emits/event", f"emits {event.ref}, a task contract; emits needs kind: event")]
        found = await self.checks.run(
            f"the check of {contract.ref}'s emits against {event.ref}",
            len(contract.source_text) + len(event.source_text),
            composition.check_emits,
            contract,
            event,
        )
        return [Finding(f.pointer, f.message, f.breaking) for f in found]

    async def _trigger_impacts(self, event: Contract) -> list[ConsumerImpact]:
        """The workflows whose triggers on ``event``'s major a new version of it would break
        (a payload field they read no longer there, or no longer sure to be present, or of
        another type): consumer-aware like a task contract's readers."""
        impacts: list[ConsumerImpact] = []
        for record in await self.list_workflows(""):
            try:
                spec = self.workflow_spec(record)
            except AccordError:
                continue
            indices = []
            for index, trigger in enumerate(spec.triggers):
                if trigger.on != event.name:
                    continue
                try:
                    if versions.resolve(trigger.version_range, [event.version]) is not None:
                        indices.append(index)
                except AccordError:
                    continue
            if not indices:
                continue
            catalog = await self._catalog(spec)
            catalog.add(event)
            for index, message in await self.checks.run(
                f"the check of workflow {spec.name}'s triggers against {event.ref}",
                _composition_size(spec, catalog),
                _broken_triggers,
                spec,
                catalog,
                indices,
            ):
                impacts.append(
                    ConsumerImpact(
                        workflow=spec.name,
                        workflow_version=record.version,
                        team=spec.team,
                        step=f"(trigger {index + 1} on {event.name})",
                        field="the event payload",
                        message=message,
                    )
                )
        return impacts

    async def _consumer_impacts(self, contract: Contract) -> list[ConsumerImpact]:
        impacts: list[ConsumerImpact] = []
        for workflow in await self._store.consumers_of(contract.name):
            try:
                spec = self.workflow_spec(workflow)
            except AccordError:
                continue
            affected = []
            for step in spec.steps.values():
                if step.contract != contract.name:
                    continue
                try:
                    if versions.resolve(step.version_range, [contract.version]) is not None:
                        affected.append(step.id)
                except AccordError:
                    continue
            if not affected:
                continue
            for impact in await self._check_consumer(spec, contract, affected):
                impacts.append(replace(impact, workflow_version=workflow.version))
        return impacts

    async def _check_consumer(
        self, spec: Workflow, contract: Contract, affected: list[str]
    ) -> list[ConsumerImpact]:
        """What ``spec`` reads from ``contract`` that the new version breaks."""
        catalog = await self._catalog(spec)
        impacts = await self.checks.run(
            f"the check of workflow {spec.name} against {contract.ref}",
            _composition_size(spec, catalog) + len(contract.source_text),
            _consumer_impacts,
            spec,
            catalog,
            contract,
            affected,
        )
        return [
            ConsumerImpact(
                workflow=spec.name,
                workflow_version=0,
                team=spec.team,
                step=impact.read.step or "(output mapping)",
                field=f"steps.{impact.read.from_step}.{impact.read.field}",
                message=impact.message,
            )
            for impact in impacts
        ]

    async def log_unknown_schema_keywords(self) -> list[str]:
        """Log once (at start) the registered contract versions and workflow versions whose
        schemas hold keywords JSON Schema does not define: registered before such keywords were
        refused, they keep working (a validator ignores the keyword), but the author probably
        meant another one."""
        from contracts._keywords import unknown_fields, workflow_schemas
        from contracts._yaml import parse_document

        found: list[str] = []
        for record in await self._store.list_contracts():
            c = record.contract
            where = unknown_fields((("input", c.input_schema), ("output", c.output_schema)))
            if where:
                found.append(f"{c.ref} ({', '.join(where)})")
        if found:
            logger.warning(
                "%d registered contract version(s) have schema keywords JSON Schema does not define,"
                " which validation ignores (typos?); they keep working, fix them in the next version: %s",
                len(found),
                "; ".join(found),
            )
        workflows: list[str] = []
        for workflow in await self._store.list_workflows():
            data = parse_document(workflow.source_text, workflow.source_name or workflow.name).data
            where = unknown_fields(workflow_schemas(data))
            if where:
                workflows.append(f"workflow {workflow.name} v{workflow.version} ({', '.join(where)})")
        if workflows:
            logger.warning(
                "%d registered workflow version(s) have schema keywords JSON Schema does not define,"
                " which validation ignores (typos?); they keep working, fix them in the next version: %s",
                len(workflows),
                "; ".join(workflows),
            )
        return found + workflows

    async def list_contracts(self, team: str, name_prefix: str, all_versions: bool) -> list[ContractRecord]:
        records = await self._store.list_contracts(team, name_prefix)
        if all_versions:
            return records
        newest: dict[tuple[str, int], ContractRecord] = {}
        for record in records:  # ordered oldest first
            newest[(record.contract.name, record.contract.major)] = record
        return list(newest.values())

    async def _readable_versions(self, principal: Principal, name: str) -> list[ContractRecord]:
        """The versions of ``name`` that ``principal`` may read: a version with visibility
        'team' only its owner (and the admin) may; none readable is PERMISSION_DENIED."""
        records = await self.versions_of(name)
        if not records:
            raise NotFoundError(f"contract {name} is not registered")
        readable = [r for r in records if r.contract.visibility != "team" or principal.owns(r.contract.team)]
        if not readable:
            team = records[0].contract.team
            raise PermissionDeniedError(
                f"contract {name} has visibility 'team' and belongs to team {team}; "
                f"team {principal.team} may not read it"
            )
        return readable

    async def get_contract(self, principal: Principal, ref: str) -> tuple[ContractRecord, list[str]]:
        name, _, version_range = ref.partition("@")
        records = await self._readable_versions(principal, name)
        all_versions = [r.contract.version for r in records]
        if not version_range:
            return records[-1], all_versions
        try:
            chosen = versions.resolve(version_range, all_versions)
        except AccordError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        if chosen is None:
            raise NotFoundError(
                f"no version of {name} matches {version_range} (registered: {', '.join(all_versions)})"
            )
        return next(r for r in records if r.contract.version == chosen), all_versions

    async def diff(self, principal: Principal, old_ref: str, new_ref: str) -> tuple[list[Finding], bool]:
        old, _ = await self.get_contract(principal, old_ref)
        new, _ = await self.get_contract(principal, new_ref)
        findings = [
            Finding(f.pointer, f.message, f.breaking)
            for f in await self.checks.run(
                f"the compatibility check of {old.contract.ref} against {new.contract.ref}",
                len(old.contract.source_text) + len(new.contract.source_text),
                compat.check_contract_compat,
                old.contract.input_schema,
                old.contract.output_schema,
                new.contract.input_schema,
                new.contract.output_schema,
            )
        ]
        return findings, old.contract.major == new.contract.major

    async def _chosen_versions(
        self, principal: Principal, ref: str, verb: str
    ) -> tuple[str, str, list[ContractRecord]]:
        """(name, owning team, the versions ``ref`` names: ``name@1.2.0`` one, ``name@1`` (or
        ``@^1``) a whole major), for the owner (or the admin) to ``verb``."""
        name, _, which = ref.partition("@")
        records = await self.versions_of(name, reread=True)
        if not records:
            raise NotFoundError(f"contract {name} is not registered")
        team = records[0].contract.team
        if not principal.owns(team):
            raise PermissionDeniedError(
                f"contract {name} belongs to team {team}; team {principal.team} may {verb} only its own contracts"
            )
        if not which:
            raise InvalidArgumentError(f"say which version or major to {verb}: {name}@1 or {name}@1.2.0")
        if "." in which:
            chosen = [r for r in records if r.contract.version == which]
        else:
            try:
                major = int(which.lstrip("^"))
            except ValueError as exc:
                raise InvalidArgumentError(f"'{which}' is neither a version nor a major") from exc
            chosen = [r for r in records if r.contract.major == major]
        if not chosen:
            raise NotFoundError(f"{ref} matches no registered version of {name}")
        return name, team, chosen

    async def _check_deprecation(self, sunset: str, replacement: str, where: str) -> None:
        """A sunset must be today or later (UTC) and a replacement must name a registered
        version in service; ``where`` prefixes the message (the option or the file field)."""
        today = today_utc()
        if datetime.date.fromisoformat(sunset) < today:
            raise InvalidArgumentError(
                f"{where}sunset {sunset} is in the past (today is {today.isoformat()}, UTC): a sunset "
                "must be today or later, so that callers get the warning before runs are refused"
            )
        if not replacement:
            return
        try:
            name, version_range = versions.split_ref(replacement)
        except AccordError as exc:
            raise InvalidArgumentError(f"{where}replacement: {exc}") from None
        if await self.resolve(name, version_range) is None:
            registered = ", ".join(
                r.contract.version for r in await self.versions_of(name) if not r.retired_ms
            )
            raise InvalidArgumentError(
                f"{where}replacement {replacement} does not exist: no version of {name} in service matches "
                f"{version_range} (registered: {registered or 'none'}); register the replacement first"
            )

    async def deprecate(
        self, principal: Principal, ref: str, sunset: str, replacement: str
    ) -> list[Contract]:
        name, team, chosen = await self._chosen_versions(principal, ref, "deprecate")
        if not sunset:
            raise InvalidArgumentError("a deprecation needs a sunset date (--sunset YYYY-MM-DD)")
        if not _ISO_DATE.match(sunset):
            raise InvalidArgumentError(f"sunset '{sunset}' is not an ISO date such as 2027-03-01")
        try:
            datetime.date.fromisoformat(sunset)
        except ValueError as exc:
            raise InvalidArgumentError(f"sunset '{sunset}' is not a valid date: {exc}") from None
        await self._check_deprecation(sunset, replacement, "")
        # Deprecating again without --replacement keeps the replacement given earlier; versions
        # with different earlier replacements are updated group by group.
        groups: dict[str, list[ContractRecord]] = {}
        for record in chosen:
            kept = replacement or (
                record.contract.deprecated.replacement if record.contract.deprecated else ""
            )
            groups.setdefault(kept, []).append(record)
        result: list[Contract] = []
        for kept, members in groups.items():
            deprecation = Deprecation(sunset, kept)
            await self._store.set_deprecation(
                name,
                [r.contract.version for r in members],
                deprecation,
                AuditRecord(
                    at_ms=now_ms(),
                    actor=principal.actor,
                    action="contract.deprecate",
                    object=ref,
                    owner_team=team,
                    platform_intervention=principal.intervenes_on(team),
                    details={"sunset": sunset, "replacement": kept},
                ),
            )
            result.extend(r.contract.with_deprecation(deprecation) for r in members)
        self._contracts.pop(name, None)
        return sorted(result, key=lambda c: codec.version_key(c.version))

    async def consumers(self, principal: Principal, ref: str) -> list[ConsumerImpact]:
        """Who calls ``ref`` (``name``, ``name@MAJOR``, ``name@VERSION`` or a range): each step
        of a workflow version in use whose range can reach it, with the runs of that workflow
        version that pinned it in the last 30 days."""
        name, _, which = ref.partition("@")
        records = await self.versions_of(name)
        if records:
            records = await self._readable_versions(principal, name)
        selected = {r.contract.version for r in records}
        if which:
            selected = set()
            for record in records:
                try:
                    if versions.resolve(which, [record.contract.version]) is not None:
                        selected.add(record.contract.version)
                except AccordError as exc:
                    raise InvalidArgumentError(f"{ref}: {exc}") from None
        counts = await self._store.contract_callers(name, now_ms() - CALLERS_WINDOW_MS)
        result: list[ConsumerImpact] = []
        for workflow in await self._store.consumers_of(name):
            spec = self.workflow_spec(workflow)
            runs = sum(
                c.runs
                for c in counts
                if c.workflow == workflow.name
                and c.workflow_version == workflow.version
                and c.contract_version in selected
            )
            for step in spec.steps.values():
                if step.contract != name:
                    continue
                if which and not _reaches(step.version_range, selected):
                    continue
                result.append(
                    ConsumerImpact(
                        workflow.name,
                        workflow.version,
                        workflow.team,
                        step.id,
                        f"{name}@{step.version_range}",
                        runs=runs,
                    )
                )
        return result

    async def retire(self, principal: Principal, ref: str) -> list[ContractRecord]:
        """Take versions out of service: they no longer resolve for a new run or a new workflow.
        Refused while a workflow version in use would be left with no version in its range, or a
        run that is not finished pinned one of them; each is named."""
        name, team, chosen = await self._chosen_versions(principal, ref, "retire")
        retiring = {r.contract.version for r in chosen if not r.retired_ms}
        if not retiring:
            return chosen  # retired already: nothing to do, nothing to record
        records = await self.versions_of(name)
        in_service = [r.contract.version for r in records if not r.retired_ms]
        remaining = [v for v in in_service if v not in retiring]
        users: list[str] = []
        for workflow in await self._store.consumers_of(name):
            try:
                spec = self.workflow_spec(workflow)
            except AccordError:
                continue
            for step in spec.steps.values():
                if step.contract != name:
                    continue
                try:
                    now = versions.resolve(step.version_range, in_service)
                    after = versions.resolve(step.version_range, remaining)
                except AccordError:
                    continue
                if now in retiring and after is None:
                    major = int(now.split(".", 1)[0]) if now else 0
                    if self._adapter_of(records, major, frozenset(retiring)) is not None:
                        continue  # its calls will be served through the adapter
                    users.append(
                        f"workflow {workflow.name} v{workflow.version} (team {workflow.team}), step {step.id} "
                        f"calls {name}@{step.version_range}, which resolves to {name}@{now}"
                    )
        for pin in await self._store.active_runs_pinning(name):
            if pin.contract_version in retiring:
                users.append(
                    f"run {pin.run_id} ({pin.workflow} v{pin.workflow_version}, team {pin.team}) "
                    f"is not finished and pinned {name}@{pin.contract_version}"
                )
        listed = ", ".join(sorted(retiring, key=codec.version_key))
        if users:
            # Audited like a refused registration: a change that waits for other teams is what
            # the autonomy report counts (docs/governance.md).
            raise await self._refused(
                principal,
                "contract.retire.refused",
                ref,
                team,
                FailedPreconditionError(
                    f"{name}@{listed} is still in use by {len(users)} workflow version(s) or run(s); "
                    "they must move to another version (or their runs finish) before it can be retired",
                    users,
                ),
                False,
            )
        at = now_ms()
        await self._store.retire_contract(
            name,
            sorted(retiring),
            at,
            AuditRecord(
                at_ms=at,
                actor=principal.actor,
                action="contract.retire",
                object=ref,
                owner_team=team,
                platform_intervention=principal.intervenes_on(team),
                details={"versions": sorted(retiring, key=codec.version_key)},
            ),
        )
        self._contracts.pop(name, None)
        return [
            r
            for r in await self.versions_of(name, reread=True)
            if r.contract.version in {c.contract.version for c in chosen}
        ]

    async def notices(self, principal: Principal, team: str = "") -> list[Notice]:
        """What concerns a team (the caller's own; the admin: ``team``'s, or every team's):
        the deprecated or retired versions its current workflows call, and, for each deprecated
        version it owns, which teams still call it and how often (last 30 days)."""
        if not principal.admin:
            team = principal.team
        today = today_utc()
        since = now_ms() - CALLERS_WINDOW_MS
        counts: dict[str, list[Any]] = {}

        async def callers(name: str) -> list[Any]:
            if name not in counts:
                counts[name] = await self._store.contract_callers(name, since)
            return counts[name]

        result: list[Notice] = []
        for workflow in await self._store.list_workflows(team):
            try:
                spec = self.workflow_spec(workflow)
            except AccordError:
                continue
            for step in spec.calls:
                contract = await self.resolve(step.contract, step.version_range)
                if contract is None:
                    retired = await self.retired_in_range(step.contract, step.version_range)
                    adapter = await self.adapter_for(step.contract, step.version_range)
                    if retired:
                        newest = retired[-1].contract
                        served = (
                            f"its calls are served by {adapter.ref} through its migration adapter; move to "
                            f"{adapter.name}@^{adapter.major}"
                            if adapter is not None
                            else "new runs are refused"
                        )
                        result.append(
                            Notice(
                                "retired",
                                newest.ref,
                                replacement=newest.deprecated.replacement if newest.deprecated else "",
                                workflow=workflow.name,
                                workflow_version=workflow.version,
                                step=step.id,
                                team=workflow.team,
                                message=(
                                    f"step {step.id} of {workflow.name} v{workflow.version} calls "
                                    f"{step.contract}@{step.version_range}, which has no version in service "
                                    f"any more ({newest.ref} was retired): {served}"
                                ),
                            )
                        )
                    continue
                if contract.deprecated is None:
                    continue
                runs = sum(
                    c.runs
                    for c in await callers(contract.name)
                    if c.workflow == workflow.name and c.contract_version == contract.version
                )
                passed = sunset_passed(contract.deprecated, today)
                result.append(
                    Notice(
                        "deprecated",
                        contract.ref,
                        contract.deprecated.sunset,
                        contract.deprecated.replacement,
                        workflow.name,
                        workflow.version,
                        step.id,
                        workflow.team,
                        runs,
                        passed,
                        f"step {step.id} of {workflow.name} v{workflow.version} calls {deprecation_warning(contract)}"
                        + (
                            "; the sunset has passed: new runs are refused without --override sunset"
                            if passed
                            else ""
                        ),
                    )
                )
        for record in await self._store.list_contracts(team):
            contract = record.contract
            if contract.deprecated is None or record.retired_ms:
                continue
            for count in await callers(contract.name):
                if count.contract_version != contract.version:
                    continue
                result.append(
                    Notice(
                        "callers",
                        contract.ref,
                        contract.deprecated.sunset,
                        contract.deprecated.replacement,
                        count.workflow,
                        count.workflow_version,
                        "",
                        count.caller_team,
                        count.runs,
                        sunset_passed(contract.deprecated, today),
                        f"{contract.ref} (deprecated, sunset {contract.deprecated.sunset}) was called by team "
                        f"{count.caller_team}, workflow {count.workflow} v{count.workflow_version}: "
                        f"{count.runs} run(s) in the last 30 days",
                    )
                )
        return result

    # ================= workflows =================

    async def register_workflow(
        self,
        principal: Principal,
        source_text: str,
        source_name: str,
        dry_run: bool,
        overrides: dict[str, str] | None = None,
    ) -> WorkflowRegistration:
        name = source_name or "workflow"
        try:
            spec = await self.checks.run(
                f"reading {name}", _parse_size(source_text), parse_workflow_text, source_text, name
            )
        except FailedPreconditionError:
            raise
        except AccordError as exc:
            raise _bad_file(exc, name) from exc
        if not principal.owns(spec.team):
            raise await self._refused(
                principal,
                "workflow.register.refused",
                spec.name,
                spec.team,
                PermissionDeniedError(
                    f"workflow {spec.name} belongs to team {spec.team}; team {principal.team} "
                    "may register only its own workflows"
                ),
                dry_run,
            )
        return await self._register_spec(
            principal, spec, source_text, name, dry_run, overrides=overrides or {}
        )

    async def _register_spec(
        self,
        principal: Principal,
        spec: Workflow,
        source_text: str,
        name: str,
        dry_run: bool,
        *,
        action: str = "workflow.register",
        details: dict[str, Any] | None = None,
        overrides: dict[str, str],
    ) -> WorkflowRegistration:
        """``action``: ``workflow.register`` or ``workflow.rollback`` (audited as such; a refusal
        is ``workflow.register.refused`` either way). Policies are checked with ``overrides``."""
        previous = await self._workflow_versions(spec.name, reread=True)
        if previous and previous[-1].source_text == source_text and not dry_run:
            # The file is the current version already: a second version would only add noise
            # to the history (and to "which version is running" questions).
            return WorkflowRegistration(
                previous[-1],
                warnings=[
                    f"{spec.name} is identical to its current version {previous[-1].version}; nothing registered"
                ],
            )
        findings, warnings, definition = await self._check_workflow(spec)
        record = WorkflowRecord(
            name=spec.name,
            team=spec.team,
            version=(previous[-1].version + 1) if previous else 1,
            description=spec.description,
            source_text=source_text,
            source_name=name,
            definition_json=json.dumps(definition, separators=(",", ":")),
            registered_ms=now_ms(),
            registered_by=principal.actor,
            contracts=tuple(sorted({s.contract for s in spec.calls})),
        )
        result = WorkflowRegistration(record, findings, warnings)
        breaking = [f for f in findings if f.breaking]
        verdict = await self.policies.check_file(
            "workflow", spec.name, spec.team, source_text, name, workflow_facts(spec), overrides
        )
        result.policy_findings = verdict.findings
        result.warnings += verdict.warnings
        if breaking and not dry_run:
            raise await self._refused(
                principal,
                "workflow.register.refused",
                spec.name,
                spec.team,
                InvalidArgumentError(
                    f"{name}: workflow {spec.name} does not type-check against the registry",
                    [str(f) for f in breaking],
                ),
                dry_run,
            )
        if dry_run:
            return result
        if verdict.blocking:
            raise await self._refused(
                principal,
                "workflow.register.refused",
                spec.name,
                spec.team,
                verdict.refusal(spec.name),
                dry_run,
            )
        await self._store.add_workflow(
            record,
            AuditRecord(
                at_ms=record.registered_ms,
                actor=principal.actor,
                action=action,
                object=f"{spec.name} v{record.version}",
                owner_team=spec.team,
                platform_intervention=principal.intervenes_on(spec.team),
                details=details or {},
            ),
        )
        self._workflows.pop(spec.name, None)
        self._specs[(record.name, record.version)] = spec
        result.registered = True
        await self._record_overrides(
            principal, verdict, "workflow", f"{spec.name} v{record.version}", spec.team
        )
        return result

    async def _check_workflow(self, spec: Workflow) -> tuple[list[Finding], list[str], dict[str, Any]]:
        findings: list[Finding] = []
        warnings: list[str] = []
        pinned: dict[str, Contract] = {}
        retired: dict[str, str] = {}  # step id -> why its range resolves to nothing: retired
        for step in spec.calls:
            contract = await self.resolve(step.contract, step.version_range)
            if contract is None:
                retired_versions = await self.retired_in_range(step.contract, step.version_range)
                if retired_versions:
                    retired[step.id] = await self._retired_message(
                        step.id, step.contract, step.version_range, retired_versions
                    )
                continue
            pinned[step.id] = contract
            # A 'team' visibility refusal comes from the composition checker below, once.
            if contract.deprecated is not None:
                replacement = (
                    f"; use {contract.deprecated.replacement}" if contract.deprecated.replacement else ""
                )
                warnings.append(
                    f"step {step.id}: {contract.ref} is deprecated (sunset {contract.deprecated.sunset}{replacement})"
                )
        order: list[str] = list(spec.steps)
        dependencies: dict[str, list[str]] = {}
        catalog = await self._catalog(spec)
        result = await self.checks.run(
            f"the type-check of workflow {spec.name}",
            _composition_size(spec, catalog),
            composition.check_workflow,
            spec,
            catalog,
        )
        # A deprecation is reported once, as the warning above, not again as a note.
        deprecated = tuple(f"{c.ref} is deprecated" for c in pinned.values() if c.deprecated is not None)
        for f in result.findings:
            if not f.breaking and any(d in f.message for d in deprecated):
                continue
            message = f.message
            for step_id, why in retired.items():
                at = message.find(f"step '{step_id}' calls ")
                if f.breaking and at >= 0 and "no registered version" in message:
                    # "no registered version matches ^1" would hide that 1.x was retired
                    message = message[:at] + why
            findings.append(Finding(f.pointer, message, f.breaking))
        order = list(result.order)
        dependencies = {k: sorted(v) for k, v in result.dependencies.items()}
        definition = {
            "name": spec.name,
            "order": order,
            "dependencies": dependencies,
            # Workflow inputs that flow into a callee's sensitive field ("input.card") are
            # sensitive too: telemetry.sensitivity scrubs them from every span, for every viewer.
            "sensitive_inputs": sorted(result.sensitive_inputs),
            # Where sensitive values land (taint): redacted in every view but the receiving step's
            # own team's (coordinator.api.convert), and scrubbed from spans.
            "sensitive_flows": sorted(result.sensitive_flows),
            "steps": {
                sid: {
                    "contract": s.contract,
                    "range": s.version_range,
                    "resolved": pinned[sid].version if sid in pinned else None,
                    "when": s.when,
                    "for_each": s.for_each,
                    "concurrency": s.concurrency,
                    **({"wait_for": s.wait.kind, "by": list(s.wait.by)} if s.wait is not None else {}),
                }
                for sid, s in spec.steps.items()
            },
        }
        return findings, warnings, definition

    async def _retired_message(
        self, step_id: str, contract: str, version_range: str, retired: list[ContractRecord]
    ) -> str:
        """Why a step's range resolves to nothing when its versions were retired, and what to call."""
        in_service = [r.contract for r in await self.versions_of(contract) if not r.retired_ms]
        adapter = await self.adapter_for(contract, version_range)
        if in_service:
            newest = in_service[-1]
            to_call = f"call {contract}@^{newest.major} (newest in service: {newest.version}) instead"
            if adapter is not None:
                to_call += (
                    f"; runs already pinned to the retired versions are served by {adapter.ref} "
                    "through its migration adapter, but no new workflow version may call them"
                )
        else:
            to_call = f"no version of {contract} is in service any more"
        return (
            f"step '{step_id}' calls {contract}@{version_range}, but every version it matches is retired "
            f"({', '.join(r.contract.version for r in retired)}): {to_call}"
        )

    async def _own_workflow(self, principal: Principal, name: str, verb: str) -> list[WorkflowRecord]:
        records = await self._workflow_versions(name, reread=True)
        if not records:
            raise NotFoundError(f"workflow {name} is not registered")
        team = records[-1].team
        if not principal.owns(team):
            raise PermissionDeniedError(
                f"workflow {name} belongs to team {team}; team {principal.team} may {verb} only its own workflows"
            )
        return records

    async def rollback_workflow(
        self, principal: Principal, name: str, to_version: int, overrides: dict[str, str] | None = None
    ) -> WorkflowRegistration:
        """Make version ``to_version``'s definition current again, as a new version: type-checked
        again against the registry as it is now, and checked against the policies as they are now
        (a rule applied since that version was registered refuses it unless overridden,
        ``overrides``, recorded as at registration); a no-op when it is current already."""
        records = await self._own_workflow(principal, name, "roll back")
        target = next((r for r in records if r.version == to_version), None)
        if target is None:
            raise NotFoundError(
                f"workflow {name} has no version {to_version} (versions: {', '.join(str(r.version) for r in records)})"
            )
        spec = self.workflow_spec(target)
        return await self._register_spec(
            principal,
            spec,
            target.source_text,
            target.source_name,
            False,
            action="workflow.rollback",
            details={"to": to_version, "from": records[-1].version},
            overrides=overrides or {},
        )

    async def set_workflow_enabled(
        self, principal: Principal, name: str, enabled: bool
    ) -> tuple[WorkflowRecord, bool]:
        """Enable or disable a workflow (all its versions); returns its current version and
        whether anything changed. A disabled workflow starts no run: not by a call, a trigger
        or a schedule."""
        records = await self._own_workflow(principal, name, "enable or disable")
        disabled = await self._store.workflow_disabled_ms(name)
        if bool(disabled) != enabled:
            return records[-1], False
        at = now_ms()
        await self._store.set_workflow_disabled(
            name,
            0 if enabled else at,
            principal.actor,
            AuditRecord(
                at_ms=at,
                actor=principal.actor,
                action="workflow.enable" if enabled else "workflow.disable",
                object=name,
                owner_team=records[-1].team,
                platform_intervention=principal.intervenes_on(records[-1].team),
            ),
        )
        self._disabled.pop(name, None)
        return records[-1], True

    async def delete_workflow_version(self, principal: Principal, name: str, version: int) -> None:
        """Delete a version no stored run references (refused, naming runs, otherwise)."""
        records = await self._own_workflow(principal, name, "delete")
        record = next((r for r in records if r.version == version), None)
        if record is None:
            raise NotFoundError(
                f"workflow {name} has no version {version} (versions: {', '.join(str(r.version) for r in records)})"
            )
        if record is records[-1]:
            # Version numbers are never given twice (caches of other coordinators key on them),
            # so the newest version stays: the next registration takes the number after it.
            raise FailedPreconditionError(
                f"v{version} is the current version of workflow {name}; roll back to another version "
                f"(accord workflow rollback {name} --to N) or register a new one first, or disable the workflow"
            )
        users = await self._store.delete_workflow_version(
            name,
            version,
            AuditRecord(
                at_ms=now_ms(),
                actor=principal.actor,
                action="workflow.delete",
                object=f"{name} v{version}",
                owner_team=record.team,
                platform_intervention=principal.intervenes_on(record.team),
            ),
        )
        if users:
            raise FailedPreconditionError(
                f"workflow {name} v{version} is referenced by runs (showing up to 10), so it cannot be "
                "deleted; delete a version no run used, or disable the workflow instead",
                [f"run {run_id}" for run_id in users],
            )
        self._workflows.pop(name, None)
        self._specs.pop((name, version), None)

    # ================= the autonomy report =================

    async def _autonomy_inputs(self, since_ms: int) -> AutonomyInputs:
        """The audit entries and runs of the period, the newest first and at most
        ``autonomy_rows`` of each (audit entries, runs, digests of deleted runs); when one of them
        holds more, the period is cut to what all three cover in full (``covered_from_ms``). Also
        what served each contract when it began, the newest workflow versions and the events
        that trigger them."""
        limit = self.autonomy_rows
        cut: list[tuple[int, str]] = []  # (the oldest time read, what) of each source cut short
        entries: list[AuditRecord] = []
        while True:
            page = await self._store.list_audit(
                "",
                0,
                min(1000, limit + 1 - len(entries)),
                since_ms=since_ms,
                before_id=entries[-1].id if entries else 0,
                newest_first=True,
            )
            entries += page
            if len(entries) > limit:
                entries = entries[:limit]
                cut.append((min(e.at_ms for e in entries), f"{limit:,} audit entries"))
                break
            if not page:
                break
        runs: list[RunRecord] = []
        while True:
            batch = await self._store.list_runs(
                RunFilter(created_after_ms=since_ms, offset=len(runs), limit=min(1000, limit + 1 - len(runs)))
            )  # newest first
            # Payloads are not needed: only what ran, when, pinning what, and how it ended.
            runs += [replace(r, input=None, output=None) for r in batch]
            if len(runs) > limit:
                runs = runs[:limit]
                cut.append((runs[-1].created_ms, f"{limit:,} runs"))
                break
            if not batch:
                break
        # Runs retention deleted live on as digests (kept as long as the audit log).
        digests: list[RunRecord] = []
        while True:
            batch = await self._store.list_run_digests(
                since_ms, len(digests), min(1000, limit + 1 - len(digests)), newest_first=True
            )
            digests += batch
            if len(digests) > limit:
                digests = digests[:limit]
                cut.append((digests[-1].created_ms, f"{limit:,} digests of deleted runs"))
                break
            if not batch:
                break
        covered = since_ms
        if cut:
            # Rows at the oldest time read may have been left out: the period covered in full
            # starts after it.
            covered = max(since_ms, max(at for at, _ in cut) + 1)
        live = {r.run_id for r in runs}
        runs += [d for d in digests if d.run_id not in live]
        entries = [e for e in reversed(entries) if e.at_ms >= covered]
        runs = [r for r in runs if r.created_ms >= covered]
        serving = await self._serving_before(covered, entries)
        workflows = await self._store.list_workflows("")
        triggers = {wf.name: [t.on for t in self.workflow_spec(wf).triggers] for wf in workflows}
        return AutonomyInputs(
            entries, runs, workflows, triggers, serving, covered, " and ".join(what for _, what in cut)
        )

    async def _serving_before(self, before_ms: int, entries: list[AuditRecord]) -> autonomy.Serving:
        """What served each (team, contract@major) the period's agent registrations concern when
        it began: the newest ``agent.register`` before it of each, looking back at most
        ``autonomy_rows`` of them (one not found counts as served by nothing)."""
        wanted = {
            (e.owner_team, str(key))
            for e in entries
            if e.action == "agent.register"
            for key in e.details.get("serves") or []
        }
        serving: autonomy.Serving = {}
        read = 0
        before_id = 0
        while wanted - serving.keys() and read < self.autonomy_rows:
            page = await self._store.list_audit(
                "",
                0,
                1000,
                until_ms=before_ms,
                action="agent.register",
                before_id=before_id,
                newest_first=True,
            )
            if not page:
                break
            read += len(page)
            before_id = page[-1].id
            for key, fingerprint in autonomy.serving_before(page).items():
                serving.setdefault(key, fingerprint)
        return serving

    async def autonomy_report(self, team: str, since_ms: int, now: int, by: str = "week") -> dict[str, Any]:
        inputs = await self._autonomy_inputs(since_ms)
        report: dict[str, Any] = await self.checks.run(
            "computing the autonomy report",
            (len(inputs.entries) + len(inputs.runs)) * 200,
            functools.partial(
                autonomy.build_report,
                serving=inputs.serving,
                by=by,
                requested_since_ms=since_ms,
                cut_by=inputs.cut_by,
            ),
            inputs.entries,
            inputs.runs,
            inputs.workflows,
            inputs.triggers,
            inputs.covered_from_ms,
            now,
            team,
        )
        return report

    async def recent_changes(self, team: str, count: int, since_ms: int) -> list[dict[str, Any]]:
        inputs = await self._autonomy_inputs(since_ms)
        listed: list[dict[str, Any]] = await self.checks.run(
            "listing the last changes",
            (len(inputs.entries) + len(inputs.runs)) * 200,
            functools.partial(autonomy.last_changes, serving=inputs.serving),
            inputs.entries,
            inputs.runs,
            inputs.workflows,
            inputs.triggers,
            count,
            team,
        )
        return listed

    # ================= policies =================

    async def policy_violators(self, rules: list[PolicyRule]) -> list[PolicyFinding]:
        """What ``rules`` (a policy file being applied) would say about what is registered: the
        newest version of each contract major in service, the newest version of each workflow,
        each registered agent (``accord policy apply --dry-run``)."""
        found: list[PolicyFinding] = []
        checked = tuple(rules)
        for record in await self.list_contracts("", "", False):
            c = record.contract
            if record.retired_ms or not any(r.covers("contract", c.team) for r in checked):
                continue
            await asyncio.sleep(0)  # small files are checked inline: let other teams' calls in between
            findings, _ = await self.checks.run(
                f"checking the policies on {c.ref}",
                len(c.source_text),
                check_policy_text,
                checked,
                "contract",
                c.ref,
                c.team,
                c.source_text,
                c.source_name or c.ref,
                *contract_facts(c),
            )
            found += findings
        newest: dict[str, WorkflowRecord] = {}
        for wf in await self._store.list_workflows(""):
            if wf.name not in newest or wf.version > newest[wf.name].version:
                newest[wf.name] = wf
        for wf in newest.values():
            if not any(r.covers("workflow", wf.team) for r in checked):
                continue
            await asyncio.sleep(0)
            findings, _ = await self.checks.run(
                f"checking the policies on {wf.name}",
                len(wf.source_text),
                check_policy_text,
                checked,
                "workflow",
                wf.name,
                wf.team,
                wf.source_text,
                wf.source_name or wf.name,
                *workflow_facts(self.workflow_spec(wf)),
            )
            found += findings
        teams = {t.name: t for t in await self._store.list_teams()}
        for agent in await self._store.list_agents():
            if not any(r.covers("agent", agent.team) for r in checked):
                continue
            team = teams.get(agent.team)
            subject = PolicySubject(
                "agent",
                f"agent {agent.agent_id}",
                agent.team,
                f"agent {agent.agent_id}",
                agent_policy_document(agent, team.retry if team else None, team.timeouts if team else None),
            )
            found += await self.checks.run(
                f"checking the policies on agent {agent.agent_id}", 0, evaluate_policy, checked, subject
            )
        return found

    async def list_workflows(self, team: str) -> list[WorkflowRecord]:
        return await self._store.list_workflows(team)

    async def get_workflow(self, name: str, version: int) -> WorkflowRecord:
        records = await self._workflow_versions(name)
        if not records:
            raise NotFoundError(f"workflow {name} is not registered")
        if version <= 0:
            return records[-1]
        for record in records:
            if record.version == version:
                return record
        raise NotFoundError(f"workflow {name} has no version {version} (newest is {records[-1].version})")


def _parse_size(text: str) -> int:
    """The size that decides where a file is read: one over the file limit is refused at once,
    before parsing, so inline."""
    return len(text) if len(text) <= MAX_DOCUMENT_BYTES else 0


def _composition_size(spec: Workflow, catalog: Any) -> int:
    return len(spec.source_text) + sum(len(c.source_text) for c in catalog)


def _consumer_impacts(
    spec: Workflow, catalog: Any, contract: Contract, affected: list[str]
) -> list[composition.ConsumerImpact]:
    """The breaking impacts of ``contract`` on what ``spec``'s ``affected`` steps read (run in a
    worker for large inputs: a module-level function, so it pickles)."""
    result = composition.check_workflow(spec, catalog)
    reads = [read for step in affected for read in result.reads.get(step, [])]
    return [impact for impact in composition.consumer_impacts(contract, reads) if impact.breaking]


def _broken_triggers(spec: Workflow, catalog: Any, indices: list[int]) -> list[tuple[int, str]]:
    """(trigger index, message) of each breaking finding in ``spec``'s triggers ``indices``
    (run in a worker for large inputs: a module-level function, so it pickles)."""
    result = composition.check_workflow(spec, catalog)
    broken = []
    for finding in result.findings:
        if not finding.breaking:
            continue
        for index in indices:
            if finding.pointer == f"/triggers/{index}" or finding.pointer.startswith(f"/triggers/{index}/"):
                broken.append((index, finding.message))
    return broken


def _migration_findings(contract: Contract, old: Contract) -> list[Any]:
    """``contracts.migration.check_migration`` with the file's lines (a module-level function:
    it runs in a worker process for large inputs)."""
    from contracts._yaml import parse_document
    from contracts.migration import check_migration

    lines = parse_document(contract.source_text, contract.source_name or "contract").lines
    return check_migration(contract, old, lines)


def _reaches(version_range: str, selected: set[str]) -> bool:
    """Whether ``version_range`` admits any of the ``selected`` versions."""
    for version in selected:
        try:
            if versions.resolve(version_range, [version]) is not None:
                return True
        except AccordError:
            return False
    return False


def _same_fields(a: Contract, b: Contract) -> bool:
    return codec.contract_to_json(replace(a, source_name="")) == codec.contract_to_json(
        replace(b, source_name="")
    )


def agent_policy_document(
    agent: AgentRecord, retry: RetryPolicy | None, timeouts: Timeouts | None
) -> dict[str, Any]:
    """An agent's registration as policy rules see it (docs/governance.md, "What a rule sees")."""
    bindings = [(b.contract, b.major, b.engine) for b in agent.bindings]
    return agent_document(
        agent.agent_id, agent.team, agent.hostname, agent.concurrency, bindings, retry, timeouts
    )


def flows_of(record: WorkflowRecord) -> tuple[str, ...]:
    """The ``sensitive_flows`` kept in a workflow version's definition."""
    try:
        definition = json.loads(record.definition_json or "{}")
    except ValueError:
        return ()
    flows = definition.get("sensitive_flows") if isinstance(definition, dict) else None
    return tuple(str(f) for f in flows) if isinstance(flows, list) else ()
