"""Type-checking a workflow against the contracts it calls.

:func:`check_workflow` resolves every step's contract range, follows every ``${...}`` reference
into the schema it reads (the workflow input, an earlier step's output, the ``for_each`` item,
a trigger's event payload) and checks that what is read fits where it is written (the callee's
input field), using :func:`contracts.compat.check_subschema`. It also records exactly which
upstream output fields the workflow reads (:class:`Read`), so that a later change to a contract
can be checked against its consumers (:func:`consumer_impacts`).

Run-time model this checker assumes (shared with the coordinator's engine):

* ``steps.<id>.output`` of a ``for_each`` step is the array of its per-item outputs, in item order;
* a step whose ``when`` is false is skipped and has no output; a step that reads the output of a
  possibly skipped step may therefore meet a missing value (reported as a note, not an error).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from contracts import _schemas
from contracts._yaml import escape, pointer_to_field
from contracts.compat import Finding, check_subschema, is_breaking
from contracts.errors import CompositionError, ReferenceError_, VersionError
from contracts.model import Contract, StepSpec, Workflow
from contracts.refs import EMITS_ROOTS, ROOTS, PathPart, Ref, find_references, format_path, parse_path
from contracts.validation import validate_payload
from contracts.versions import parse_range, parse_version, resolve

__all__ = [
    "CompositionResult",
    "ConsumerImpact",
    "ContractCatalog",
    "ContractResolver",
    "PinnedCatalog",
    "Read",
    "check_emits",
    "check_workflow",
    "consumer_impacts",
    "emitted_sensitive",
    "reads_of",
]

Schema = Mapping[str, Any] | bool


@runtime_checkable
class ContractResolver(Protocol):
    """Finds the newest registered contract matching ``name`` and a version range."""

    def __call__(self, name: str, version_range: str) -> Contract | None: ...


class ContractCatalog:
    """An in-memory set of contracts that resolves ranges (the offline CLI's "registry").

    Callable as a :class:`ContractResolver`; :meth:`versions` lets messages list what exists.
    """

    def __init__(self, contracts: Iterable[Contract] = ()) -> None:
        self._by_name: dict[str, dict[str, Contract]] = {}
        self._other_names: set[str] = set()
        for contract in contracts:
            self.add(contract)

    def add(self, contract: Contract) -> None:
        """Add (or replace) one contract version."""
        self._by_name.setdefault(contract.name, {})[contract.version] = contract

    def get(self, name: str, version: str) -> Contract | None:
        """The exact version, or None."""
        return self._by_name.get(name, {}).get(version)

    def note_names(self, names: Iterable[str]) -> None:
        """Names of other registered contracts, only for "did you mean" in messages."""
        self._other_names.update(names)

    def names(self) -> list[str]:
        """Every contract name known here (with versions or only noted)."""
        return sorted(set(self._by_name) | self._other_names)

    def versions(self, name: str) -> list[str]:
        """Registered versions of ``name``, oldest first."""
        return sorted(self._by_name.get(name, {}), key=parse_version)

    def __call__(self, name: str, version_range: str) -> Contract | None:
        version = resolve(version_range, self._by_name.get(name, {}))
        return None if version is None else self._by_name[name][version]

    def __iter__(self) -> Iterator[Contract]:
        for versions in self._by_name.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())


class PinnedCatalog(ContractCatalog):
    """A catalog that answers with the exact version a run pinned for a contract name, whatever
    the range asked (a retired major served through its adapter included): the flows of a run
    are those of the versions it really calls. Names it has no pin for resolve as usual."""

    def __init__(
        self, contracts: Iterable[Contract] = (), pinned: Mapping[str, Contract] | None = None
    ) -> None:
        super().__init__(contracts)
        self.pinned = dict(pinned or {})
        for contract in self.pinned.values():
            self.add(contract)

    def __call__(self, name: str, version_range: str) -> Contract | None:
        if name in self.pinned:
            return self.pinned[name]
        return super().__call__(name, version_range)


@dataclass(frozen=True)
class Read:
    """One upstream output field a workflow reads, and where the value goes.

    ``field`` is relative to the step's scope, e.g. ``output.payment_ref`` or
    ``output.items[*].sku`` (``[*]`` = every element, read through ``for_each``).
    ``target`` says where it is used: ``steps.ship.input.payment_ref``, ``steps.notify.when``,
    ``steps.notify.for_each``, ``output.shipment_id``; ``target_schema`` is what the value must
    fit (resolved against ``target_root``), ``{}`` when anything goes.
    """

    workflow: str
    step: str | None  # the reading step; None for the workflow's output mapping
    target: str
    from_step: str
    contract: str
    version: str
    major: int
    field: str
    required: bool = True  # the upstream schema promises the field is present
    target_schema: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    target_root: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def path(self) -> tuple[PathPart, ...]:
        """``field`` parsed, without the leading ``output``."""
        return parse_path(self.field, wildcard=True, roots=("output",))[1:]


@dataclass(frozen=True)
class ConsumerImpact:
    """How a new contract version breaks (or may break) one :class:`Read` of a consumer."""

    read: Read
    message: str
    breaking: bool = True

    @property
    def team(self) -> str:
        """The team owning the consuming workflow."""
        return self.read.workflow.split("/", 1)[0]

    def __str__(self) -> str:
        where = f"step '{self.read.step}'" if self.read.step else "its output mapping"
        return f"workflow {self.read.workflow} ({where}, {self.read.target}) reads {self.read.field}: {self.message}"


@dataclass
class CompositionResult:
    """What :func:`check_workflow` found and learned about a workflow."""

    workflow: Workflow
    findings: list[Finding] = field(default_factory=list)
    pinned: dict[str, Contract] = field(default_factory=dict)
    reads: dict[str, list[Read]] = field(default_factory=dict)  # keyed by the step read FROM
    dependencies: dict[str, set[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # topological; steps in a cycle are left out
    sensitive_inputs: set[str] = field(default_factory=set)  # e.g. "input.card_token"
    # Where a sensitive value lands (taint): "steps.<id>.input.<path>" and "output.<path>" that
    # a mapping, a for_each item or text around a reference fills from a sensitive workflow input
    # or from a field an upstream contract marks sensitive in its output.
    sensitive_flows: set[str] = field(default_factory=set)
    trigger_contracts: dict[int, Contract] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no finding is breaking (notes may remain)."""
        return not is_breaking(self.findings)

    @property
    def all_reads(self) -> list[Read]:
        """Every read, flattened."""
        return [read for reads in self.reads.values() for read in reads]

    def line_of(self, finding: Finding) -> int | None:
        """The file line a finding is about, when known."""
        return _line_of(self.workflow, finding.pointer)

    def raise_for_findings(self) -> None:
        """Raise CompositionError listing the breaking findings, if any."""
        if not self.ok:
            raise CompositionError(
                f"workflow {self.workflow.name} does not type-check:\n"
                + "\n".join(f.message for f in self.findings if f.breaking)
            )


def _line_of(workflow: Workflow, pointer: str) -> int | None:
    while True:
        if pointer in workflow.lines:
            return workflow.lines[pointer]
        if not pointer:
            break
        pointer = pointer.rsplit("/", 1)[0]
    return None


def reads_of(reads: Iterable[Read], contract_name: str, major: int) -> list[Read]:
    """The reads of one contract major (what a new version of it must keep providing)."""
    return [r for r in reads if r.contract == contract_name and r.major == major]


def consumer_impacts(new_contract: Contract, reads: Iterable[Read]) -> list[ConsumerImpact]:
    """Check that every read of ``new_contract``'s name and major still resolves and fits.

    Reads of other contracts or majors are ignored. An empty list means no consumer breaks.
    """
    impacts: list[ConsumerImpact] = []
    root = new_contract.output_schema
    for read in reads_of(reads, new_contract.name, new_contract.major):
        current: Schema = root
        required = True
        missing: str | None = None
        for depth, part in enumerate(read.path):
            lookup = _schemas.child(current, part, root)
            if lookup.schema is None or not lookup.declared:
                where = format_path(("output", *read.path[:depth])) if depth else "its output"
                missing = f"{new_contract.ref} no longer declares '{part}' in {where}"
                break
            required = required and (lookup.required or part == "*")
            current = lookup.schema
        if missing:
            impacts.append(ConsumerImpact(read, missing))
            continue
        if read.required and not required:
            impacts.append(ConsumerImpact(read, f"{new_contract.ref} no longer promises it is present"))
        findings = check_subschema(
            current,
            read.target_schema,
            sub_root=root,
            sup_root=read.target_root or read.target_schema,
            subject=read.field,
        )
        impacts.extend(ConsumerImpact(read, f.message, f.breaking) for f in _soften(findings))
    return impacts


# -- the checker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """What a reference reads: its schema (against ``root``) and whether it is surely present."""

    schema: Schema
    root: Schema
    required: bool
    read_step: str | None = None  # upstream step, for Reads
    read_path: tuple[PathPart, ...] = ()  # path under that step's scope, e.g. ("output", "items")
    input_path: tuple[PathPart, ...] | None = None  # path under the workflow input, for sensitivity


@dataclass
class _Context:
    """Where a template is being checked: which roots it may use."""

    label_pointer: str  # "/steps/ship", "/output", "/triggers/0"
    reader: str | None  # reading step id; None for the output mapping / triggers
    target_prefix: str  # "steps.ship.input", "output", "triggers[0].input"
    allowed_roots: tuple[str, ...]
    item: _Source | None = None
    event: _Source | None = None
    callee: Contract | None = None  # for sensitivity of callee input fields


class _Checker:
    ref_roots: tuple[str, ...] = ROOTS

    def __init__(
        self,
        workflow: Workflow,
        resolver: Callable[[str, str], Contract | None],
        event_sensitive: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.workflow = workflow
        self.resolver = resolver
        # event contract name -> payload fields ("input.card") known to carry a sensitive value
        # beyond what the event contract marks itself (what its emitter's taint put there)
        self.event_sensitive = {name: tuple(paths) for name, paths in (event_sensitive or {}).items()}
        self.result = CompositionResult(workflow=workflow)
        self.step_outputs: dict[str, Schema] = {}
        self.unresolved: set[str] = set()
        self.skippable: set[str] = set()
        # (what is read, where it lands) for every reference in a step input or the output
        self.flows: list[tuple[tuple[PathPart, ...], tuple[PathPart, ...]]] = []
        self.sensitive_input_parts: set[tuple[PathPart, ...]] = set()

    # -- reporting --

    def label(self, pointer: str) -> str:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        if parts[:1] == ["steps"] and len(parts) > 1:
            rest = "/" + "/".join(escape(p) for p in parts[2:]) if len(parts) > 2 else ""
            text = f"step '{parts[1]}'" + (f", {pointer_to_field(rest)}" if rest else "")
        elif parts[:1] == ["triggers"] and len(parts) > 1:
            index = int(parts[1]) if parts[1].isdigit() else 0
            triggers = self.workflow.triggers
            on = f" on {triggers[index].on}" if index < len(triggers) else ""
            rest = "/" + "/".join(escape(p) for p in parts[2:]) if len(parts) > 2 else ""
            text = f"trigger {index + 1}{on}" + (f", {pointer_to_field(rest)}" if rest else "")
        elif parts[:1] == ["output"]:
            text = "workflow " + (pointer_to_field(pointer) or "output")
        else:
            text = "workflow " + (pointer_to_field(pointer) or self.workflow.name)
        line = _line_of(self.workflow, pointer)
        if line is None and parts[:1] == ["steps"] and len(parts) > 1:
            step = self.workflow.steps.get(parts[1])
            line = step.line if step else None
        return f"{text} (line {line})" if line is not None else text

    def add(self, pointer: str, message: str, *, breaking: bool = True) -> None:
        self.result.findings.append(Finding(pointer, f"{self.label(pointer)}: {message}", breaking))

    def add_found(self, pointer: str, found: Iterable[Finding], context: str) -> None:
        for finding in _soften(found):
            self.result.findings.append(
                Finding(
                    finding.pointer, f"{self.label(pointer)}: {context}{finding.message}", finding.breaking
                )
            )

    # -- phases --

    def run(self) -> CompositionResult:
        for step in self.workflow.steps.values():
            self.pin(step)
        self.dependencies()
        for step_id in self.result.order:
            self.check_step(self.workflow.steps[step_id])
        self.check_output()
        for index, trigger in enumerate(self.workflow.triggers):
            self.check_trigger(index, trigger)
        self.result.sensitive_flows = self.tainted_targets()
        return self.result

    def tainted_targets(self) -> set[str]:
        """The targets of ``flows`` that receive a sensitive value, or a value holding one (the
        part below is then named: ``steps.pay.input.payment.card_token``). A run input filled
        from a sensitive event field taints in turn what the workflow maps it into."""
        seeds = set(self.sensitive_input_parts)
        declared = {tuple(path.split(".")) for path in self.workflow.sensitive}
        seeds |= declared
        for step_id, contract in self.result.pinned.items():
            for sensitive in contract.sensitive:
                parts = tuple(sensitive.split("."))
                if parts[0] == "output":
                    seeds.add(("steps", step_id, *parts))
        for index, event in self.result.trigger_contracts.items():
            for sensitive in (*event.sensitive, *self.event_sensitive.get(event.name, ())):
                parts = tuple(sensitive.split("."))
                if parts[0] == "input":  # an event contract's payload is its input
                    seeds.add(("event", str(index), *parts[1:]))
        # The run input's own fields the workflow declares sensitive: redacted there too.
        tainted: set[tuple[PathPart, ...]] = set(declared)
        while True:
            found = set(tainted)
            for origin, target in self.flows:
                for seed in seeds:
                    common = min(len(seed), len(origin))
                    if seed[:common] == origin[:common]:
                        # origin at or under the seed: the whole target; above it: the part below
                        found.add((*target, *seed[len(origin) :]))
            if found == tainted:
                return {".".join(str(p) for p in path) for path in tainted}
            tainted = found
            seeds |= {path for path in tainted if path[0] == "input"}

    def did_you_mean(self, name: str) -> str:
        names_of = getattr(self.resolver, "names", None)
        known = [n for n in names_of() if n != name] if callable(names_of) else []
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return f"; did you mean '{close[0]}'?" if close else ""

    def pin(self, step: StepSpec) -> None:
        if step.wait is not None:
            # A waiting step's output is typed by its wait: an approval's fixed shape, or the
            # signal's payload schema (docs/workflows.md, "Waiting steps").
            self.step_outputs[step.id] = step.wait.output_schema
            return
        pointer = f"/steps/{escape(step.id)}/contract"
        wanted = f"{step.contract}@{step.version_range}"
        try:
            version_range = parse_range(step.version_range)
        except VersionError as exc:
            self.add(pointer, str(exc))
            self.unresolved.add(step.id)
            return
        contract = self.resolver(step.contract, step.version_range)
        if contract is None:
            versions_of = getattr(self.resolver, "versions", None)
            registered = list(versions_of(step.contract)) if callable(versions_of) else []
            if registered:
                listing = f"(registered: {', '.join(registered)})"
            elif callable(versions_of):
                listing = f"(no version of {step.contract} is registered{self.did_you_mean(step.contract)})"
            else:
                listing = ""
            self.add(
                pointer,
                f"step '{step.id}' calls {wanted} but no registered version matches {version_range} {listing}".rstrip(),
            )
            self.unresolved.add(step.id)
            return
        self.result.pinned[step.id] = contract
        output: Schema = contract.output_schema
        if step.for_each is not None:
            output = {"type": "array", "items": contract.output_schema}
        self.step_outputs[step.id] = output
        if contract.kind == "event":
            self.add(
                pointer, f"{contract.ref} is an event contract; steps call task contracts (events trigger)"
            )
        if contract.visibility == "team" and contract.team != self.workflow.team:
            self.add(
                pointer,
                f"{contract.ref} has visibility 'team': only team {contract.team} may call it, "
                f"and this workflow belongs to {self.workflow.team}",
            )
        if contract.deprecated is not None:
            instead = f"; use {contract.deprecated.replacement}" if contract.deprecated.replacement else ""
            self.add(
                pointer,
                f"{contract.ref} is deprecated (sunset {contract.deprecated.sunset}){instead}",
                breaking=False,
            )
        wanted_attempts, allowed = step.retry.max_attempts, contract.retry.max_attempts
        if wanted_attempts is not None and allowed is not None and wanted_attempts > allowed:
            self.add(
                f"/steps/{escape(step.id)}/retry/max_attempts",
                f"asks for {wanted_attempts} attempts but {contract.ref} allows at most {allowed}",
            )

    def step_refs(self, step: StepSpec) -> list[tuple[str, Ref]]:
        found: list[tuple[str, Ref]] = []
        base = f"/steps/{escape(step.id)}"
        for key, template in (("input", step.input), ("when", step.when), ("for_each", step.for_each)):
            if template is None:
                continue
            try:
                found.extend((f"{base}/{key}{ref.pointer}", ref) for ref in find_references(template))
            except ReferenceError_ as exc:
                self.add(f"{base}/{key}", str(exc))
        return found

    def dependencies(self) -> None:
        steps = self.workflow.steps
        for step in steps.values():
            for pointer, ref in self.step_refs(step):  # reports malformed references
                upstream = ref.step_id
                if upstream is not None and upstream not in steps:
                    close = difflib.get_close_matches(upstream, list(steps), n=1)
                    hint = f"did you mean '{close[0]}'?" if close else f"steps are: {', '.join(steps)}"
                    self.add(pointer, f"reads {ref} but there is no step '{upstream}'; {hint}")
        deps = {step_id: set(reads) for step_id, reads in self.workflow.dependencies().items()}
        self.result.dependencies = deps
        self.result.order = self.topological(deps)
        for step_id in self.result.order:
            if self.workflow.steps[step_id].when is not None or deps[step_id] & self.skippable:
                self.skippable.add(step_id)

    def topological(self, deps: dict[str, set[str]]) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done
        reported: set[frozenset[str]] = set()

        def visit(node: str, trail: list[str]) -> bool:
            if state.get(node) == 2:
                return True
            if state.get(node) == 1:
                cycle = [*trail[trail.index(node) :], node]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    if len(cycle) == 2:
                        message = f"step '{node}' reads its own output"
                    else:
                        message = "steps form a cycle: " + " → ".join(cycle)
                    self.add(f"/steps/{escape(cycle[0])}", message)
                return False
            state[node] = 1
            ok = all([visit(up, [*trail, node]) for up in sorted(deps[node], key=list(deps).index)])
            state[node] = 2
            if ok:
                order.append(node)
            else:
                state[node] = 3  # in or behind a cycle
            return ok

        for node in deps:
            if state.get(node) != 3:
                visit(node, [])
        return [n for n in order if state.get(n) == 2]

    # -- references --

    def walk(self, pointer: str, ref: Ref, start: _Source, skip: int, owner: str) -> _Source | None:
        """Follow ``ref.path[skip:]`` from ``start``; report a missing field and return None."""
        current = start.schema
        required = start.required
        path = ref.path[skip:]
        for depth, part in enumerate(path):
            lookup = _schemas.child(current, part, start.root)
            if lookup.schema is None or not lookup.declared:
                where = format_path(ref.path[: skip + depth])
                known = _schemas.declared_fields(current, start.root)
                close = difflib.get_close_matches(str(part), [k for k in known if k != part], n=1)
                if close:
                    hint = f"; did you mean '{close[0]}'?"
                elif known:
                    hint = f" ({where} has: {', '.join(known)})"
                elif isinstance(part, str) and _schemas.types_of(current, start.root) == {"array"}:
                    hint = f" ({where} is an array: pick an element with [N], or use for_each)"
                else:
                    hint = f" ({where} declares no fields)"
                self.add(pointer, f"reads {ref}, but {owner} does not declare '{part}' in {where}{hint}")
                return None
            required = required and (lookup.required or part == "*")
            current = lookup.schema
        input_path = (*start.input_path, *path) if start.input_path is not None else None
        return _Source(current, start.root, required, start.read_step, (*start.read_path, *path), input_path)

    def source(self, pointer: str, ref: Ref, context: _Context) -> _Source | None:
        """The schema a reference reads, or None (after reporting why)."""
        root = ref.root
        if root not in context.allowed_roots:
            allowed = ", ".join(f"${{{r}...}}" for r in context.allowed_roots)
            why = {
                "item": "${item} exists only in the input of a step with for_each",
                "event": "${event} exists only in a trigger's input",
            }.get(root, f"{root} is not available here")
            self.add(pointer, f"reads {ref}: {why}; here you may use {allowed}")
            return None
        if root == "input":
            schema = self.workflow.input_schema
            start = _Source(schema, schema, True, input_path=("input",))
            return self.walk(pointer, ref, start, 1, "the workflow input schema")
        if root == "item":
            return self.walk(pointer, ref, context.item, 1, "the for_each item") if context.item else None
        if root == "event":
            if context.event is None:
                return None
            return self.walk(pointer, ref, context.event, 1, "the event payload")
        upstream = ref.step_id
        if upstream is None or upstream not in self.workflow.steps:
            return None  # reported by dependencies()
        if len(ref.path) < 3 or ref.path[2] != "output":
            self.add(
                pointer, f"reads {ref}; only a step's output is readable: ${{steps.{upstream}.output...}}"
            )
            return None
        if upstream not in self.step_outputs:
            return None  # unresolved contract, reported already
        if upstream == context.reader:
            return None  # reported as a cycle
        if upstream in self.skippable:
            self.add(
                pointer,
                f"reads {ref}, but step '{upstream}' may be skipped (when), so its output may be absent",
                breaking=False,
            )
        output = self.step_outputs[upstream]
        contract = self.result.pinned.get(upstream)
        if contract is None:  # a waiting step: its output is its wait's
            wait = self.workflow.steps[upstream].wait
            what = f"the {wait.kind} of step '{upstream}'" if wait is not None else f"step '{upstream}'"
            return self.walk(pointer, ref, _Source(output, output, True, upstream, ("output",)), 3, what)
        start = _Source(output, contract.output_schema, True, upstream, ("output",))
        return self.walk(pointer, ref, start, 3, f"{contract.ref}'s output")

    def record(self, source: _Source, target: str, context: _Context, schema: Schema, root: Schema) -> None:
        if source.read_step is None:
            return
        contract = self.result.pinned.get(source.read_step)
        if contract is None:
            return  # a waiting step's output: no contract's consumer to record
        as_mapping: Mapping[str, Any] = (
            schema if isinstance(schema, Mapping) else ({} if schema else {"not": {}})
        )
        root_mapping: Mapping[str, Any] = root if isinstance(root, Mapping) else {}
        read = Read(
            workflow=self.workflow.name,
            step=context.reader,
            target=target,
            from_step=source.read_step,
            contract=contract.name,
            version=contract.version,
            major=contract.major,
            field=format_path(source.read_path),
            required=source.required,
            target_schema=as_mapping,
            target_root=root_mapping,
        )
        self.result.reads.setdefault(source.read_step, []).append(read)

    def mark_sensitive(self, source: _Source, target_path: tuple[str, ...], context: _Context) -> None:
        """If a workflow input path flows into a callee field marked sensitive, it is sensitive.
        Also records the flow itself, for ``tainted_targets``."""
        self.mark_flow(source, target_path, context)
        if source.input_path is None or context.callee is None:
            return
        target = ".".join(("input", *target_path))
        for sensitive in context.callee.sensitive:
            if target == sensitive or target.startswith(sensitive + "."):
                self.result.sensitive_inputs.add(format_path(source.input_path))
                self.sensitive_input_parts.add(tuple(source.input_path))
            elif sensitive.startswith(target + "."):
                below = tuple(sensitive[len(target) + 1 :].split("."))
                self.result.sensitive_inputs.add(format_path((*source.input_path, *below)))
                self.sensitive_input_parts.add((*source.input_path, *below))

    def mark_flow(self, source: _Source, target_path: tuple[str, ...], context: _Context) -> None:
        if context.target_prefix == "output":
            target: tuple[PathPart, ...] = ("output", *target_path)
        elif context.reader is not None and context.target_prefix in (
            f"steps.{context.reader}.input",
            f"steps.{context.reader}.for_each",  # the array a for_each step goes over
        ):
            target = ("steps", *context.target_prefix.split(".")[1:], *target_path)
        elif context.event is not None and context.target_prefix == "input":
            target = ("input", *target_path)  # a trigger: the event payload into the run input
        else:
            return  # a `when`: no payload shows it
        if source.read_step is not None:
            self.flows.append((("steps", source.read_step, *source.read_path), target))
        elif source.input_path is not None:
            self.flows.append((tuple(source.input_path), target))

    # -- templates --

    def fit(
        self,
        template: Any,
        target: Schema | None,
        root: Schema,
        pointer: str,
        path: tuple[str, ...],
        context: _Context,
        must_exist: bool = False,
    ) -> None:
        """Check that ``template`` evaluates to something ``target`` accepts (None: check refs only).

        ``must_exist``: the value cannot be left out (a field the target requires, or an array
        element), so a whole reference to something that may be absent is an error there; a
        reference inside text always needs its value."""
        target_name = ".".join((context.target_prefix, *path)) if path else context.target_prefix
        refs: list[Ref] = []
        if isinstance(template, str):
            try:
                refs = find_references(template, roots=self.ref_roots)
            except ReferenceError_ as exc:
                self.add(pointer, str(exc))
                return
        if not refs and not (isinstance(template, Mapping | list) and _has_refs(template)):
            if target is not None:
                value_schema = _schemas.standalone(target, root)
                for violation in validate_payload(value_schema, template, target_name):
                    at = violation.path[1:]
                    self.add(
                        pointer,
                        f"the value {_short(template)} does not fit{(' ' + at) if at else ''}: "
                        f"{violation.message}",
                    )
            return
        if isinstance(template, str):
            whole = len(refs) == 1 and refs[0].whole
            for ref in refs:
                source = self.source(pointer, ref, context)
                if source is None:
                    continue
                if not source.required and (must_exist or not whole):
                    needs = f"{target_name} is required" if whole else "text with a reference needs its value"
                    self.add(
                        pointer,
                        f"reads {ref}, which may be absent (its schema does not require it), but {needs}; "
                        "make the field required where it comes from, or map it into an optional field",
                    )
                if whole:
                    checked: Schema = target if target is not None else True
                    self.record(source, target_name, context, checked, root)
                    self.mark_sensitive(source, path, context)
                    if target is not None:
                        self.add_found(
                            pointer,
                            check_subschema(
                                source.schema,
                                target,
                                pointer=pointer,
                                sub_root=_as_root(source.root),
                                sup_root=_as_root(root),
                                subject=_subject(ref),
                            ),
                            f"reads {ref}: ",
                        )
                else:
                    self.record(source, target_name, context, True, root)
                    self.mark_sensitive(source, path, context)
            if not whole and target is not None:
                self.add_found(
                    pointer,
                    check_subschema(
                        {"type": "string"}, target, pointer=pointer, sup_root=_as_root(root), subject="text"
                    ),
                    "text with references makes a string: ",
                )
            return
        if isinstance(template, Mapping):
            target = _schemas.deref(target, root) if target is not None else None
            required_keys: set[str] = set()
            if target is not None:
                types = _schemas.types_of(target, root)
                if types is not None and "object" not in types:
                    self.add(
                        pointer, f"a mapping is given but {target_name} must be {' or '.join(sorted(types))}"
                    )
                    return
                required = _schemas.required_fields(target, root)
                required_keys = set(required)
                missing = [name for name in required if name not in template]
                if missing:
                    callee = (
                        f" ({context.callee.ref} requires {', '.join(required)})" if context.callee else ""
                    )
                    self.add(
                        pointer, f"required {target_name} field(s) not supplied: {', '.join(missing)}{callee}"
                    )
            for key, value in template.items():
                child_pointer = f"{pointer}/{escape(str(key))}"
                child_target: Schema | None = None
                if target is not None:
                    lookup = _schemas.child(target, str(key), root)
                    if lookup.schema is None:
                        known = _schemas.declared_fields(target, root)
                        close = difflib.get_close_matches(str(key), known, n=1)
                        hint = f"did you mean '{close[0]}'?" if close else f"it accepts: {', '.join(known)}"
                        self.add(child_pointer, f"{target_name} does not accept a field '{key}'; {hint}")
                        self.fit(value, None, root, child_pointer, (*path, str(key)), context)
                        continue
                    child_target = lookup.schema
                self.fit(
                    value,
                    child_target,
                    root,
                    child_pointer,
                    (*path, str(key)),
                    context,
                    must_exist=str(key) in required_keys,
                )
            return
        if isinstance(template, list):
            target = _schemas.deref(target, root) if target is not None else None
            if target is not None:
                types = _schemas.types_of(target, root)
                if types is not None and "array" not in types:
                    self.add(
                        pointer, f"a list is given but {target_name} must be {' or '.join(sorted(types))}"
                    )
                    return
            for index, value in enumerate(template):
                element: Schema | None = None
                if target is not None:
                    lookup = _schemas.child(target, index, root)
                    if lookup.schema is None:
                        self.add(f"{pointer}/{index}", f"{target_name} accepts no element [{index}]")
                        continue
                    element = lookup.schema
                self.fit(
                    value, element, root, f"{pointer}/{index}", (*path, str(index)), context, must_exist=True
                )

    def check_step(self, step: StepSpec) -> None:
        base = f"/steps/{escape(step.id)}"
        contract = self.result.pinned.get(step.id)
        roots = ("input", "steps")
        if step.when is not None:
            when_context = _Context(base, step.id, f"steps.{step.id}.when", roots)
            self.fit(step.when, None, True, f"{base}/when", (), when_context)
        context = _Context(base, step.id, f"steps.{step.id}.input", roots, callee=contract)
        if step.for_each is not None:
            # with an unknown item schema, ${item...} references are not checked (no noise)
            context.item = self.for_each_item(step, context)
            context.allowed_roots = ("input", "steps", "item")
        if contract is None:
            self.fit(step.input, None, True, f"{base}/input", (), context)
            return
        self.fit(step.input, contract.input_schema, contract.input_schema, f"{base}/input", (), context)

    def for_each_item(self, step: StepSpec, context: _Context) -> _Source | None:
        pointer = f"/steps/{escape(step.id)}/for_each"
        assert step.for_each is not None
        try:
            refs = find_references(step.for_each)
        except ReferenceError_:
            return None  # reported with the step's references
        if len(refs) != 1 or not refs[0].whole:
            self.add(
                pointer,
                "for_each must be exactly one reference to an array, e.g. ${steps.reserve.output.items}",
            )
            return None
        ref = refs[0]
        source = self.source(pointer, ref, _Context(context.label_pointer, step.id, "", ("input", "steps")))
        if source is None:
            return None
        self.record(source, f"steps.{step.id}.for_each", context, {"type": "array"}, {})
        self.mark_flow(source, (), _Context(context.label_pointer, step.id, f"steps.{step.id}.for_each", ()))
        if not source.required:
            self.add(
                pointer,
                f"for_each reads {ref}, which may be absent (its schema does not require it); "
                "make the field required where it comes from",
            )
        types = _schemas.types_of(source.schema, source.root)
        if types != {"array"}:
            what = " or ".join(sorted(types)) if types else "not declared as an array (no 'type: array')"
            if types:
                what = f"a {what}, not an array"
            self.add(pointer, f"for_each needs an array, but {ref} is {what}")
            return None
        lookup = _schemas.child(source.schema, "*", source.root)
        input_path = (*source.input_path, "*") if source.input_path is not None else None
        item_schema: Schema = lookup.schema if lookup.schema is not None else True
        return _Source(item_schema, source.root, True, source.read_step, (*source.read_path, "*"), input_path)

    def check_output(self) -> None:
        if self.workflow.output is None:
            return
        context = _Context("/output", None, "output", ("input", "steps"))
        self.fit(self.workflow.output, None, True, "/output", (), context)

    def check_trigger(self, index: int, trigger: Any) -> None:
        pointer = f"/triggers/{index}"
        wanted = f"{trigger.on}@{trigger.version_range}"
        event = self.resolver(trigger.on, trigger.version_range)
        if event is None:
            versions_of = getattr(self.resolver, "versions", None)
            registered = list(versions_of(trigger.on)) if callable(versions_of) else []
            listing = f" (registered: {', '.join(registered)})" if registered else ""
            if not registered and callable(versions_of):
                listing = f" (no version of {trigger.on} is registered{self.did_you_mean(trigger.on)})"
            self.add(f"{pointer}/on", f"triggers on {wanted} but no registered version matches{listing}")
            return
        self.result.trigger_contracts[index] = event
        if event.kind != "event":
            self.add(
                f"{pointer}/on",
                f"{event.ref} is a task contract; a trigger needs an event contract (kind: event)",
            )
            return
        payload = event.input_schema
        # input_path: where a trigger's event fields flow (into the run input), for sensitive_flows
        source = _Source(payload, payload, True, input_path=("event", str(index)))
        context = _Context(pointer, None, "input", ("event",), event=source)
        schema = self.workflow.input_schema
        self.fit(trigger.input, schema, schema, f"{pointer}/input", (), context)


# Keywords that only narrow the values of a type. When a source does not guarantee such a
# constraint of its target, the value may still fit; the callee's input is validated again when
# the task is dispatched, so this is a note, not an error (types, fields and presence are errors).
_VALUE_KEYWORDS = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    }
)


def _soften(findings: Iterable[Finding]) -> list[Finding]:
    softened: list[Finding] = []
    for finding in findings:
        keyword = finding.pointer.rsplit("/", 1)[-1]
        if finding.breaking and keyword in _VALUE_KEYWORDS:
            message = f"{finding.message} (allowed, but checked when the step runs)"
            finding = Finding(finding.pointer, message, breaking=False)
        softened.append(finding)
    return softened


def _has_refs(template: Any) -> bool:
    """Cheaply: does any string inside ``template`` contain ``${``? (malformed ones too)."""
    if isinstance(template, str):
        return "${" in template
    if isinstance(template, Mapping):
        return any(_has_refs(value) for value in template.values())
    if isinstance(template, list):
        return any(_has_refs(value) for value in template)
    return False


def _subject(ref: Ref) -> str:
    """How compat names the value: ``output.payment_ref``, ``input.order_id``, ``item.sku``."""
    if ref.root == "steps":
        return format_path(("output", *ref.path[3:]))
    return ref.text


def _as_root(schema: Schema) -> Mapping[str, Any] | None:
    return schema if isinstance(schema, Mapping) else None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def check_workflow(
    workflow: Workflow,
    resolve_contract: Callable[[str, str], Contract | None],
    event_sensitive: Mapping[str, Iterable[str]] | None = None,
) -> CompositionResult:
    """Type-check ``workflow`` against the contracts ``resolve_contract(name, range)`` returns.

    ``resolve_contract`` returns the newest registered contract matching the range, or None; if
    it also has a ``versions(name)`` method (as :class:`ContractCatalog` does), messages about an
    unmatched range list the registered versions. The result's ``findings`` say what is wrong,
    each pointing into the workflow (``/steps/ship/input/payment_ref``) and naming the step,
    field and line; ``ok`` is True when none is breaking.

    ``event_sensitive`` (event contract name -> payload fields such as ``input.card``): fields of
    the event that started a run which carry a sensitive value its contract does not mark itself
    (an emitter's taint, :func:`emitted_sensitive`); they seed the flows as the event contract's
    own ``sensitive`` fields do.
    """
    return _Checker(workflow, resolve_contract, event_sensitive).run()


class _EmitsChecker(_Checker):
    """Checks a task contract's ``emits:`` payload mapping: its references read the step's
    ``input`` (the contract's input schema) or ``output`` (its output schema), and what it
    makes must fit the event contract's payload schema."""

    ref_roots = EMITS_ROOTS

    def __init__(self, contract: Contract, event: Contract) -> None:
        super().__init__(Workflow(name=contract.name, input_schema={}, steps={}), lambda name, r: None)
        self.contract = contract
        self.event = event

    def label(self, pointer: str) -> str:
        return f"{self.contract.ref} emits {self.event.ref}, " + (pointer_to_field(pointer) or "emits")

    def source(self, pointer: str, ref: Ref, context: _Context) -> _Source | None:
        schema = self.contract.input_schema if ref.root == "input" else self.contract.output_schema
        start = _Source(schema, schema, True)
        return self.walk(pointer, ref, start, 1, f"{self.contract.ref}'s {ref.root}")

    def check(self) -> list[Finding]:
        assert self.contract.emits is not None
        payload = self.event.input_schema
        context = _Context("/emits", None, "payload", EMITS_ROOTS)
        self.fit(
            self.contract.emits.payload, payload, payload, "/emits/payload", (), context, must_exist=True
        )
        return self.result.findings


def check_emits(contract: Contract, event: Contract) -> list[Finding]:
    """Type-check ``contract``'s ``emits:`` payload mapping against ``event`` (the newest
    registered version of the event contract it names): every reference must exist in the
    contract's input or output schema and fit the payload field it fills, and every field the
    payload requires must be filled. The findings say what is wrong, each naming the field."""
    if contract.emits is None:
        return []
    return _EmitsChecker(contract, event).check()


def emitted_sensitive(contract: Contract, tainted: Iterable[str] = ()) -> list[str]:
    """The fields of the event payload ``contract``'s ``emits:`` makes (``input.card``, named as
    an event contract names its own sensitive fields) that carry a sensitive value: one the
    contract marks ``sensitive`` in its input or output, or one of ``tainted`` (``input.x``: the
    step's input fields a run's flows make sensitive). Text built around such a value counts; a
    reference to a parent of a sensitive field makes the part below it sensitive in the payload.
    Only walks the payload template (bounded by the contract's limits), no schema."""
    if contract.emits is None:
        return []
    seeds = [tuple(path.split(".")) for path in (*contract.sensitive, *tainted)]
    if not seeds:
        return []
    try:
        refs = find_references(contract.emits.payload, roots=EMITS_ROOTS)
    except ReferenceError_:
        return []  # refused at registration; nothing is emitted from it
    found: set[str] = set()
    for ref in refs:
        origin = tuple(str(part) for part in ref.path)
        target = tuple(p.replace("~1", "/").replace("~0", "~") for p in ref.pointer.split("/")[1:])
        for seed in seeds:
            common = min(len(seed), len(origin))
            if all(a == b or "*" in (a, b) for a, b in zip(seed[:common], origin[:common], strict=True)):
                # the origin at or under the seed: the whole target; above it: the part below
                found.add(".".join(("input", *target, *seed[len(origin) :])))
    return sorted(found)
