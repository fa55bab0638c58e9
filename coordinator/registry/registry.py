"""Contracts and workflows: registration with compatibility and composition checks.

Rules (docs/contracts.md, "Versions and ranges" and "Compatibility rules"; docs/workflows.md,
"What registration checks"): a contract version is immutable; a new version in an existing major
must be compatible with every earlier version of that major and must not break any registered
consumer workflow; a workflow registers only when it type-checks against the registry.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
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
from contracts.loader import parse_contract_text, parse_workflow_text
from contracts.model import Contract, Deprecation, Workflow
from coordinator.checks import Checks
from coordinator.principal import Principal
from coordinator.registry.refusals import RefusalBudget
from coordinator.store import codec
from coordinator.store.base import Store
from coordinator.store.records import AuditRecord, ContractRecord, WorkflowRecord

logger = logging.getLogger(__name__)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What a refusal's audit entry keeps of the error's lines: enough to say why, bounded.
_REFUSAL_LINES = 5
_REFUSAL_LINE_CHARS = 300


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


@dataclass
class WorkflowRegistration:
    record: WorkflowRecord
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    registered: bool = False


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
        # Caches of what the store holds, per name, with when they were read: several
        # coordinators may share one store, so a cached list is read again once it is older than
        # ``fresh_s`` (another coordinator's registration is seen within that), and at once when
        # a version or range asked for is not in it.
        self._contracts: dict[str, tuple[float, list[ContractRecord]]] = {}
        self._specs: dict[tuple[str, int], Workflow] = {}
        self._workflows: dict[str, tuple[float, list[WorkflowRecord]]] = {}
        self.fresh_s = 1.0

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
        for reread in (False, True):
            records = await self.versions_of(name, reread=reread)
            try:
                chosen = versions.resolve(version_range, [r.contract.version for r in records])
            except AccordError:
                return None
            if chosen is not None:
                return await self.contract(name, chosen)
        return None

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
        ``output.card``), as the composition checker found at registration; none for an unknown
        version or one registered before Accord computed them."""
        record = await self.workflow_version(name, version)
        return flows_of(record) if record is not None else ()

    def workflow_spec(self, record: WorkflowRecord) -> Workflow:
        key = (record.name, record.version)
        spec = self._specs.get(key)
        if spec is None:
            spec = parse_workflow_text(record.source_text, record.source_name or record.name, registered=True)
            self._specs[key] = spec
        return spec

    async def _catalog(self, spec: Workflow) -> Any:
        """The registered versions of every contract ``spec`` calls, for the composition checker."""
        from contracts.composition import ContractCatalog

        catalog = ContractCatalog()
        for step in spec.calls:
            for record in await self.versions_of(step.contract):
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
        self, principal: Principal, source_text: str, source_name: str, dry_run: bool
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
        breaking = [f for f in result.findings if f.breaking]
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
        return result

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
        except Exception:
            logger.exception("could not write the audit entry of a refused registration of %s", obj)
        return error

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
        """Log once (at start) the registered contract versions whose schemas hold keywords JSON
        Schema does not define: registered before such keywords were refused, they keep
        working (a validator ignores the keyword), but the author probably meant another one."""
        from contracts._keywords import unknown_keywords

        found: list[str] = []
        for record in await self._store.list_contracts():
            c = record.contract
            where = [
                side + u.pointer.replace("/", ".")
                for side, schema in (("input", c.input_schema), ("output", c.output_schema))
                for u in unknown_keywords(schema)
            ]
            if where:
                found.append(f"{c.ref} ({', '.join(where)})")
        if found:
            logger.warning(
                "%d registered contract version(s) have schema keywords JSON Schema does not define,"
                " which validation ignores (typos?); they keep working, fix them in the next version: %s",
                len(found),
                "; ".join(found),
            )
        return found

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

    async def deprecate(
        self, principal: Principal, ref: str, sunset: str, replacement: str
    ) -> list[Contract]:
        name, _, which = ref.partition("@")
        records = await self.versions_of(name)
        if not records:
            raise NotFoundError(f"contract {name} is not registered")
        team = records[0].contract.team
        if not principal.owns(team):
            raise PermissionDeniedError(
                f"contract {name} belongs to team {team}; team {principal.team} may deprecate only its own contracts"
            )
        if not which:
            raise InvalidArgumentError(f"say which version or major to deprecate: {name}@1 or {name}@1.2.0")
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
        if not sunset:
            raise InvalidArgumentError("a deprecation needs a sunset date (--sunset YYYY-MM-DD)")
        if not _ISO_DATE.match(sunset):
            raise InvalidArgumentError(f"sunset '{sunset}' is not an ISO date such as 2027-03-01")
        try:
            datetime.date.fromisoformat(sunset)
        except ValueError as exc:
            raise InvalidArgumentError(f"sunset '{sunset}' is not a valid date: {exc}") from None
        if replacement:
            try:
                versions.split_ref(replacement)
            except AccordError as exc:
                raise InvalidArgumentError(f"replacement: {exc}") from None
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
        name = ref.partition("@")[0]
        if await self.versions_of(name):
            await self._readable_versions(principal, name)
        result: list[ConsumerImpact] = []
        for workflow in await self._store.consumers_of(name):
            spec = self.workflow_spec(workflow)
            for step in spec.steps.values():
                if step.contract == name:
                    result.append(
                        ConsumerImpact(
                            workflow.name,
                            workflow.version,
                            workflow.team,
                            step.id,
                            f"{name}@{step.version_range}",
                        )
                    )
        return result

    # ================= workflows =================

    async def register_workflow(
        self, principal: Principal, source_text: str, source_name: str, dry_run: bool
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
        findings, warnings, definition = await self._check_workflow(spec)
        previous = await self._workflow_versions(spec.name)
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
        await self._store.add_workflow(
            record,
            AuditRecord(
                at_ms=record.registered_ms,
                actor=principal.actor,
                action="workflow.register",
                object=f"{spec.name} v{record.version}",
                owner_team=spec.team,
                platform_intervention=principal.intervenes_on(spec.team),
            ),
        )
        self._workflows.pop(spec.name, None)
        self._specs[(record.name, record.version)] = spec
        result.registered = True
        return result

    async def _check_workflow(self, spec: Workflow) -> tuple[list[Finding], list[str], dict[str, Any]]:
        findings: list[Finding] = []
        warnings: list[str] = []
        pinned: dict[str, Contract] = {}
        for step in spec.calls:
            contract = await self.resolve(step.contract, step.version_range)
            if contract is None:
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
            findings.append(Finding(f.pointer, f.message, f.breaking))
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


def _same_fields(a: Contract, b: Contract) -> bool:
    return codec.contract_to_json(replace(a, source_name="")) == codec.contract_to_json(
        replace(b, source_name="")
    )


def flows_of(record: WorkflowRecord) -> tuple[str, ...]:
    """The ``sensitive_flows`` kept in a workflow version's definition."""
    try:
        definition = json.loads(record.definition_json or "{}")
    except ValueError:
        return ()
    flows = definition.get("sensitive_flows") if isinstance(definition, dict) else None
    return tuple(str(f) for f in flows) if isinstance(flows, list) else ()
