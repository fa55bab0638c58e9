"""Publishing events: validate against the event contract, store, and start triggered runs.

A triggered run is a trace of its own whose run span links to the span that published the
event (when the publisher sent a trace context): one event may start many runs, each
owned by another team, and none of them is part of the publisher's call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from typing import Any

from contracts.errors import AccordError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from contracts.refs import evaluate
from contracts.versions import resolve
from coordinator.engine import Engine
from coordinator.events.base import EventBus
from coordinator.principal import Principal
from coordinator.registry import Registry
from coordinator.store.base import Store
from coordinator.store.records import AuditRecord, Changes, EventRecord
from coordinator.telemetry.propagation import event_link

logger = logging.getLogger(__name__)


class EventService:
    def __init__(self, store: Store, registry: Registry, engine: Engine, bus: EventBus) -> None:
        self._store = store
        self._registry = registry
        self._engine = engine
        self._bus = bus

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
                for event in await self._store.list_events(name, 0, 1000):
                    if event.event_id == previous.get("event_id"):
                        if _canonical(event.payload) != _canonical(payload):
                            raise InvalidArgumentError(
                                f"request id {request_id} already published event {event.event_id}"
                                " with another payload; use a new request id for a new event"
                            )
                        return event
            # The id follows from the request id (made once by the publisher), so a retry on any
            # coordinator, after a lost answer or a crash between starting the runs and storing
            # the event, is the same event and starts no run twice (their idempotency keys name it).
            digest = hashlib.sha256(f"{principal.actor}\0{request_id}".encode()).hexdigest()
            event_id = f"evt-{digest[:16]}"
        else:
            event_id = f"evt-{secrets.token_hex(8)}"
        triggered = await self._trigger(
            principal, contract.name, contract.version, payload, trace_context, event_id
        )
        event = EventRecord(
            event_id=event_id,
            contract=contract.name,
            contract_version=contract.version,
            team=contract.team,
            payload=payload,
            published_ms=int(time.time() * 1000),
            triggered_runs=tuple(triggered),
            trace_context=trace_context,
        )
        # The entry names the event, not its payload (which may hold what the audit log's
        # readers must not see).
        audit = AuditRecord(
            at_ms=event.published_ms,
            actor=principal.actor,
            action="event.publish",
            object=event_id,
            owner_team=contract.team,
            platform_intervention=principal.intervenes_on(contract.team),
            details={"contract": contract.ref, "triggered_runs": list(triggered)},
        )
        changes = Changes(events=[event], audit=[audit])
        if request_id:
            changes.requests[("event", request_id)] = {"event_id": event_id}
        await self._store.apply(changes)
        await self._bus.publish(event)
        return event

    async def _trigger(
        self,
        principal: Principal,
        name: str,
        version: str,
        payload: Any,
        trace_context: dict[str, str],
        event_id: str,
    ) -> list[str]:
        started: list[str] = []
        link = event_link(trace_context)
        for record in await self._registry.list_workflows(""):
            try:
                spec = self._registry.workflow_spec(record)
            except AccordError:
                continue
            for trigger in spec.triggers:
                if trigger.on != name or resolve(trigger.version_range, [version]) is None:
                    continue
                if await self._registry.workflow_disabled_ms(record.name):
                    # A disabled workflow's triggers do not fire (docs/workflows.md, "Versions and commands").
                    logger.info("event %s did not start %s: the workflow is disabled", event_id, record.name)
                    continue
                try:
                    run_input = evaluate(trigger.input, {"event": payload})
                    # The run belongs to the workflow's team: it starts on that team's behalf.
                    view, _ = await self._engine.start_run(
                        Principal(team=record.team),
                        record.name,
                        run_input,
                        idempotency_key=f"event:{event_id}",
                        links=[link] if link else [],
                    )
                    started.append(view.run.run_id)
                except AccordError as exc:
                    logger.warning("event %s did not start %s: %s", event_id, record.name, exc)
        return started


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
