"""Publishing events: validate against the event contract, store, hand on to the bus; the
bus runs the triggers (starts the runs of every workflow with a matching trigger).

Durable first: an event is stored (with its audit entry) before it is acknowledged to the
publisher, and only then handed to the bus (``coordinator.events.base``). A coordinator that
dies in between leaves it "undelivered" in the store; every coordinator looks for such events
every ``SWEEP_S`` and hands them on. The bus may deliver an event more than once (a crash after
the triggers ran and before the bus heard so); each triggered run starts with the idempotency
key ``event:<event id>``, unique per workflow and team, so a second delivery starts nothing.
See docs/production.md, "Events".

A triggered run is a trace of its own whose run span links to the span that published the
event (when the publisher sent a trace context): one event may start many runs, each
owned by another team, and none of them is part of the publisher's call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from typing import Any

from contracts.errors import (
    AccordError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnreachableError,
)
from contracts.refs import evaluate
from contracts.versions import resolve
from coordinator.engine import Engine
from coordinator.events.base import EventBus
from coordinator.principal import Principal
from coordinator.redaction import scalar_values, scrub_text
from coordinator.registry import Registry
from coordinator.store.base import Store
from coordinator.store.records import AuditRecord, Changes, EventRecord
from coordinator.telemetry.propagation import event_link

logger = logging.getLogger(__name__)

# How often a coordinator looks for stored events no bus took (a crash between storing and
# handing on, or a bus that was away), and how old such an event must be: younger ones are
# still being handed on by the coordinator that stored them.
SWEEP_S = 1.0
SWEEP_AGE_MS = 2_000


def trigger_key(event_id: str) -> str:
    """The idempotency key of a run an event starts (the store keeps keys per workflow and
    calling team, so the key with the workflow names one run per event and workflow)."""
    return f"event:{event_id}"


class EventService:
    def __init__(self, store: Store, registry: Registry, engine: Engine, bus: EventBus) -> None:
        self._store = store
        self._registry = registry
        self._engine = engine
        self._bus = bus
        self._handing_on: set[str] = set()  # event ids this process is handing to the bus now
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def bus(self) -> EventBus:
        return self._bus

    async def start(self) -> None:
        """Connect the bus (``UnreachableError`` if it cannot: the coordinator does not start)
        and begin handing on what earlier processes left undelivered, and the events steps
        publish through their contract's ``emits:`` (stored by the engine with the step's
        success)."""
        await self._bus.start(self.run_triggers)
        self._engine.on_events_stored(self._stored_by_engine)
        self._sweeper = asyncio.create_task(self._sweep(), name="events-sweep")

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._bus.close()

    async def publish(
        self, principal: Principal, ref: str, payload: Any, trace_context: dict[str, str], request_id: str
    ) -> EventRecord:
        name, _, version_range = ref.partition("@")
        owner = name.split("/", 1)[0]
        if not principal.owns(owner):
            raise PermissionDeniedError(
                f"event {name} is owned by team {owner}; only that team may publish it"
            )
        if (
            version_range
            and "." not in version_range
            and not version_range.startswith(("^", "~", ">", "<", "="))
        ):
            version_range = f"^{version_range}"
        contract = await self._registry.resolve(name, version_range or ">=0.0.0")
        if contract is None:
            raise NotFoundError(f"no registered version of {name} matches '{version_range or 'any'}'")
        violations = await self._registry.checks.validate(
            f"the payload of {contract.ref}", contract.input_schema, payload, "event payload"
        )
        if violations:
            raise InvalidArgumentError(
                f"the payload does not match {contract.ref}", [str(v) for v in violations]
            )
        if request_id:
            previous = await self._store.get_request("event", request_id)
            if previous:
                stored = await self._store.get_event(str(previous.get("event_id", "")))
                if stored is not None:
                    if _canonical(stored.payload) != _canonical(payload):
                        raise InvalidArgumentError(
                            f"request id {request_id} already published event {stored.event_id}"
                            " with another payload; use a new request id for a new event"
                        )
                    return stored
            # The id follows from the request id (made once by the publisher), so a retry on any
            # coordinator after a lost answer is the same event.
            digest = hashlib.sha256(f"{principal.actor}\0{request_id}".encode()).hexdigest()
            event_id = f"evt-{digest[:16]}"
        else:
            event_id = f"evt-{secrets.token_hex(8)}"
        return await self._store_and_hand_on(
            principal.actor,
            principal.intervenes_on(contract.team),
            contract.name,
            contract.version,
            contract.team,
            contract.ref,
            payload,
            trace_context,
            event_id,
            request_id=request_id,
            sensitive=tuple(contract.sensitive),
        )

    async def _store_and_hand_on(
        self,
        actor: str,
        intervention: bool,
        name: str,
        version: str,
        team: str,
        ref: str,
        payload: Any,
        trace_context: dict[str, str],
        event_id: str,
        *,
        request_id: str = "",
        source_run: str = "",
        sensitive: tuple[str, ...] = (),
    ) -> EventRecord:
        if not self._bus.available():
            # Refused before anything is stored: the publisher's retry (same request id) is the
            # first attempt of this event.
            raise UnreachableError(
                f"{self._bus.where} is unreachable, so no event can be published now; nothing was"
                " stored: try again (the same request id publishes the event once)"
            )
        event = EventRecord(
            event_id=event_id,
            contract=name,
            contract_version=version,
            team=team,
            payload=payload,
            published_ms=int(time.time() * 1000),
            trace_context=trace_context,
            source_run=source_run,
            sensitive=sensitive,
        )
        # The entry names the event, not its payload (which may hold what the audit log's
        # readers must not see).
        audit = AuditRecord(
            at_ms=event.published_ms,
            actor=actor,
            action="event.publish",
            object=event_id,
            owner_team=team,
            platform_intervention=intervention,
            details={"contract": ref, **({"source_run": source_run} if source_run else {})},
        )
        changes = Changes(events=[event], audit=[audit])
        if request_id:
            changes.requests[("event", request_id)] = {"event_id": event_id}
        await self._store.apply(changes)
        # Acknowledged once stored; handed on in the background (and by the sweep, should this
        # process die first).
        self._spawn(self._hand_on(event))
        return event

    async def sensitive_fields(self, event: EventRecord) -> tuple[str, ...]:
        """The payload fields of ``event`` that carry a sensitive value (``input.card``): those
        it was published with (its contract's, and an emitting step's taint) and those its
        contract version marks (an event stored before events kept them)."""
        contract = await self._registry.contract(event.contract, event.contract_version)
        marked = contract.sensitive if contract is not None else ()
        return tuple(sorted({*event.sensitive, *marked}))

    def _stored_by_engine(self, events: list[EventRecord]) -> None:
        for event in events:
            self._spawn(self._hand_on(event))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_on(self, event: EventRecord) -> None:
        if event.event_id in self._handing_on:
            return
        self._handing_on.add(event.event_id)
        try:
            await self._bus.publish(event)
            await self._store.mark_event_delivered(event.event_id, int(time.time() * 1000))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # left undelivered: the sweep hands it on again
            logger.warning(
                "event %s is stored but %s did not take it yet (%s); it is handed on again within %.0fs",
                event.event_id,
                self._bus.where,
                exc,
                SWEEP_S + SWEEP_AGE_MS / 1000,
            )
        finally:
            self._handing_on.discard(event.event_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            if not self._bus.available():
                continue
            try:
                due = await self._store.undelivered_events(int(time.time() * 1000) - SWEEP_AGE_MS, 100)
            except Exception as exc:  # the store is away: it says so itself
                logger.debug("looking for undelivered events failed: %s", exc)
                continue
            for event in due:
                await self._hand_on(event)

    async def run_triggers(self, event_id: str) -> None:
        """The bus's handler: start the run of every workflow with a trigger matching the event
        (once: again after a redelivery, it finds the runs started) and record them with it.
        Raises when that could not be done (the store is away): the bus delivers it again."""
        event = await self._store.get_event(event_id)
        if event is None:
            # Stored by a coordinator of another installation sharing the stream by mistake,
            # or pruned: nothing to run.
            logger.warning("event %s is not in the store; its triggers are not run", event_id)
            return
        if event.handled_ms:
            return
        started = await self._trigger(event)
        await self._store.record_event_handled(event_id, started, int(time.time() * 1000))

    async def _trigger(self, event: EventRecord) -> list[str]:
        started: list[str] = []
        link = event_link(event.trace_context)
        key = trigger_key(event.event_id)
        for record in await self._registry.list_workflows(""):
            try:
                spec = self._registry.workflow_spec(record)
            except AccordError:
                continue
            for trigger in spec.triggers:
                if (
                    trigger.on != event.contract
                    or resolve(trigger.version_range, [event.contract_version]) is None
                ):
                    continue
                # The run belongs to the workflow's team: it starts on that team's behalf.
                principal = Principal(team=record.team)
                existing = await self._store.find_run(record.name, principal.actor, key)
                if existing is not None:  # delivered before; its runs were started then
                    started.append(existing.run_id)
                    continue
                if await self._registry.workflow_disabled_ms(record.name):
                    # A disabled workflow's triggers do not fire (docs/workflows.md, "Versions and commands").
                    logger.info(
                        "event %s did not start %s: the workflow is disabled", event.event_id, record.name
                    )
                    continue
                try:
                    run_input = evaluate(trigger.input, {"event": event.payload})
                    view, _ = await self._engine.start_run(
                        principal,
                        record.name,
                        run_input,
                        idempotency_key=key,
                        links=[link] if link else [],
                    )
                    started.append(view.run.run_id)
                except UnreachableError:
                    raise  # the store is away: the whole event is delivered again
                except AccordError as exc:
                    # Why, without the payload's values (a violation of the workflow's input
                    # schema quotes the value it refuses, which may be sensitive).
                    logger.warning(
                        "event %s did not start %s: %s",
                        event.event_id,
                        record.name,
                        scrub_text(str(exc), scalar_values(event.payload)),
                    )
        return started


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
