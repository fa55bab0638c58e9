"""Domain model shared by coordinator and agents: frozen dataclasses, never protobuf messages.

Durations are seconds (float). Schemas are plain JSON-compatible dicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from contracts.errors import ReferenceError_
from contracts.refs import find_references

JSON = Any  # a JSON-compatible value


@dataclass(frozen=True)
class RetryPolicy:
    """One layer of a retry policy. ``None`` means "not set at this layer"."""

    max_attempts: int | None = None
    initial_backoff: float | None = None
    backoff_coefficient: float | None = None
    max_backoff: float | None = None
    non_retryable: tuple[str, ...] = ()

    def over(self, lower: RetryPolicy) -> RetryPolicy:
        """This layer on top of ``lower``: set fields win, non_retryable lists add up."""
        return RetryPolicy(
            max_attempts=self.max_attempts if self.max_attempts is not None else lower.max_attempts,
            initial_backoff=self.initial_backoff
            if self.initial_backoff is not None
            else lower.initial_backoff,
            backoff_coefficient=self.backoff_coefficient
            if self.backoff_coefficient is not None
            else lower.backoff_coefficient,
            max_backoff=self.max_backoff if self.max_backoff is not None else lower.max_backoff,
            non_retryable=tuple(dict.fromkeys((*lower.non_retryable, *self.non_retryable))),
        )

    def backoff(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed.

        Never raises and always finite, between 0 and ``MAX_BACKOFF_SECONDS``, whatever the
        numbers (the edges refuse NaN, infinities and negatives; a policy stored before they
        did still lets its run move on)."""
        initial = _finite(self.initial_backoff, 1.0)
        coefficient = max(_finite(self.backoff_coefficient, 2.0), 1.0)
        cap = min(_finite(self.max_backoff, MAX_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS)
        try:
            delay = initial * coefficient ** max(failed_attempt - 1, 0)
        except OverflowError:
            delay = cap
        return min(max(delay, 0.0), cap) if math.isfinite(delay) else cap


MAX_BACKOFF_SECONDS = 366 * 86400.0  # a backoff never waits longer than a year


def _finite(value: float | None, default: float) -> float:
    """``value`` when set, finite and not negative; else ``default``."""
    if value is None or not math.isfinite(value) or value < 0:
        return default
    return value


def seconds_to_ms(value: float | None) -> int:
    """Milliseconds in a timeout of ``value`` seconds; 0 (not set) for None, NaN or a negative
    value, at most a year (so arithmetic on it never raises)."""
    if value is None or math.isnan(value) or value <= 0:
        return 0
    return int(min(value, MAX_BACKOFF_SECONDS) * 1000)


PLATFORM_RETRY = RetryPolicy(max_attempts=3, initial_backoff=1.0, backoff_coefficient=2.0, max_backoff=60.0)


@dataclass(frozen=True)
class Timeouts:
    """Timeouts in seconds; ``None`` means "not set at this layer"."""

    schedule_to_start: float | None = None
    start_to_close: float | None = None
    heartbeat: float | None = None

    def over(self, lower: Timeouts) -> Timeouts:
        return Timeouts(
            schedule_to_start=self.schedule_to_start
            if self.schedule_to_start is not None
            else lower.schedule_to_start,
            start_to_close=self.start_to_close if self.start_to_close is not None else lower.start_to_close,
            heartbeat=self.heartbeat if self.heartbeat is not None else lower.heartbeat,
        )


PLATFORM_TIMEOUTS = Timeouts(schedule_to_start=None, start_to_close=300.0, heartbeat=30.0)


@dataclass(frozen=True)
class Deprecation:
    sunset: str  # ISO date
    replacement: str = ""


@dataclass(frozen=True)
class Emits:
    """``emits:`` of a task contract: the event its team publishes each time a step of the
    contract succeeds, with a payload mapped from the step's ``input`` and ``output``."""

    event: str  # "team/name" of an event contract of the same team
    major: int
    payload: JSON  # mapping template over ${input...} and ${output...}

    @property
    def ref(self) -> str:
        return f"{self.event}@{self.major}"


@dataclass(frozen=True)
class Migration:
    """A new major's adapter for callers of an older major (``migrates_from:``): ``input`` maps
    the old input to the new one (``${input...}``), ``output`` the new output back to the old
    one (``${output...}``). Once every version of the old major is retired, its callers are
    served by this version through these mappings (docs/contracts.md, "Migration adapters")."""

    contract: str  # "team/name", the same contract
    major: int  # the older major it serves
    input: JSON
    output: JSON

    @property
    def ref(self) -> str:
        return f"{self.contract}@{self.major}"


@dataclass(frozen=True)
class Contract:
    """One version of a contract (``team/name@MAJOR.MINOR.PATCH``)."""

    name: str  # "team/name"
    version: str  # "1.2.0"
    input_schema: Mapping[str, JSON]
    output_schema: Mapping[str, JSON]
    description: str = ""
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    idempotent: bool = False
    visibility: str = "public"  # "public" | "team"
    sensitive: tuple[str, ...] = ()  # "input.card_token", "output.secret"
    deprecated: Deprecation | None = None
    kind: str = "task"  # "task" | "event" (an event contract: only a payload schema, as input)
    emits: Emits | None = None  # a task contract's event on each success
    # The owner's limit: at most this many attempts of the contract run at once (None: none).
    max_concurrency: int | None = None
    source_text: str = ""
    source_name: str = ""
    migrates_from: Migration | None = None

    @property
    def team(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def with_deprecation(self, deprecation: Deprecation | None) -> Contract:
        return replace(self, deprecated=deprecation)


WAIT_APPROVAL = "approval"
WAIT_SIGNAL = "signal"
ON_TIMEOUT_CHOICES = {WAIT_APPROVAL: ("reject", "approve", "fail"), WAIT_SIGNAL: ("fail",)}

# What an approval step outputs, for the composition checker and the engine alike.
APPROVAL_OUTPUT_SCHEMA: Mapping[str, JSON] = {
    "type": "object",
    "required": ["approved", "by", "comment"],
    "properties": {
        "approved": {"type": "boolean"},
        "by": {"type": "string"},
        "comment": {"type": "string"},
    },
}


@dataclass(frozen=True)
class WaitSpec:
    """What a waiting step (``wait_for`` instead of ``contract``) waits for: an approval, or a
    named signal with a payload schema (docs/workflows.md, "Waiting steps")."""

    kind: str  # WAIT_APPROVAL | WAIT_SIGNAL
    by: tuple[str, ...]  # teams that may answer (besides the workflow's owner)
    timeout: float | None = None  # seconds; None: waits until answered or the run ends
    on_timeout: str = "fail"  # approval: reject | approve | fail; signal: fail
    name: str = ""  # the signal's name
    schema: Mapping[str, JSON] | None = None  # the signal's payload schema (None: any JSON)

    @property
    def output_schema(self) -> Mapping[str, JSON]:
        if self.kind == WAIT_APPROVAL:
            return APPROVAL_OUTPUT_SCHEMA
        return self.schema if self.schema is not None else {}

    def describe(self) -> str:
        """``approval by finance`` / ``signal carrier-ack from shipping``."""
        teams = ", ".join(self.by)
        if self.kind == WAIT_APPROVAL:
            return f"approval by {teams}"
        return f"signal {self.name} from {teams}"


@dataclass(frozen=True)
class StepSpec:
    """One step of a workflow as written in the file."""

    id: str
    contract: str  # "team/name"; "" for a waiting step
    version_range: str  # "^1", "1.2.3", ">=1.2,<2"; "" for a waiting step
    input: JSON  # mapping template with "${...}" references
    when: str | None = None
    for_each: str | None = None
    concurrency: int | None = None  # fan-out limit for for_each
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    line: int | None = None  # where the step starts in its file
    wait: WaitSpec | None = None  # set on a waiting step (no contract)


@dataclass(frozen=True)
class Schedule:
    """A workflow's schedule (docs/workflows.md, "Schedules"): runs at the due times of ``cron``
    in ``timezone``, with ``input``."""

    id: str
    cron: str  # five fields: minute hour day-of-month month day-of-week
    timezone: str = "UTC"  # an IANA time zone name
    input: JSON = field(default_factory=dict)
    overlap: str = "skip"  # skip | queue | allow: a due time while a run of it is still going
    catch_up: str = "none"  # none | last | all: due times missed while no coordinator ran
    max_catch_up: int = 10  # at most this many missed due times are run (catch_up: all)
    line: int | None = None

    def to_json(self) -> dict[str, JSON]:
        return {
            "cron": self.cron,
            "timezone": self.timezone,
            "input": self.input,
            "overlap": self.overlap,
            "catch_up": self.catch_up,
            "max_catch_up": self.max_catch_up,
        }


@dataclass(frozen=True)
class Trigger:
    on: str  # "team/event-name"
    version_range: str
    input: JSON
    line: int | None = None  # where the trigger starts in its file


@dataclass(frozen=True)
class Workflow:
    """A cross-team workflow as written in its file (not yet type-checked)."""

    name: str  # "team/name"
    input_schema: Mapping[str, JSON]
    steps: Mapping[str, StepSpec]
    output: JSON = None  # mapping template
    description: str = ""
    triggers: tuple[Trigger, ...] = ()
    source_text: str = ""
    source_name: str = ""
    sensitive: tuple[str, ...] = ()  # workflow input fields, "input.card_token"
    # (rule, reason) for every run of the workflow (``overrides: {sunset: "..."}``)
    overrides: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None  # the run's timeout in seconds (None: none)
    schedules: tuple[Schedule, ...] = ()
    # JSON pointer ("/steps/ship/input/payment_ref") -> line in the file, for messages
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def team(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def calls(self) -> list[StepSpec]:
        """The steps that call a contract (every step but the waiting ones), in file order."""
        return [step for step in self.steps.values() if step.wait is None]

    def dependencies(self) -> dict[str, list[str]]:
        """``{step_id: [ids of the steps it reads]}`` for every step, in file order.

        A step depends on each step its ``input``, ``when`` or ``for_each`` references
        (``${steps.charge.output...}``), listed once, in the order of first reference (input, then
        when, then for_each); there is no separate ``depends_on`` (docs/workflows.md, "Dependencies
        between steps"). The one place this is worked out, for every reader of the graph (the
        composition checker, the UI's step graph, the run engine).

        Only steps of this workflow are listed: a reference to an unknown step, and a template with
        a malformed reference, add nothing here (the loader and the composition checker report
        them). A step that reads its own output lists itself; registration refuses that as a cycle.

        Worked out once per workflow object (every run of it asks): the answer is shared, not to
        be changed.
        """
        known: dict[str, list[str]] | None = self.__dict__.get("_dependencies")
        if known is not None:
            return known
        graph: dict[str, list[str]] = {}
        for step_id, step in self.steps.items():
            reads: list[str] = []
            for template in (step.input, step.when, step.for_each):
                try:
                    refs = find_references(template)
                except ReferenceError_:
                    continue
                for ref in refs:
                    upstream = ref.step_id
                    if upstream is not None and upstream in self.steps and upstream not in reads:
                        reads.append(upstream)
            graph[step_id] = reads
        self.__dict__["_dependencies"] = graph  # frozen: set past __setattr__, as cached_property does
        return graph
