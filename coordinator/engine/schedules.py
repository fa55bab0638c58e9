"""The scheduler: starts the runs of workflow schedules at their cron due times.

Each schedule of a workflow's newest version is a row in the store (``ScheduleRecord``): its spec,
whether it is paused, the next time to look at it (``next_due_ms``), the last cron due time dealt
with (``last_due_ms``) and the due times queued behind a run still going. Every coordinator runs
a scheduler; each claims due schedules (``Store.claim_schedules``: one claimer per schedule, and a
claim that runs out frees it, so a replica that dies mid-fire delays a due time, never loses it)
and starts their runs with the idempotency key ``schedule:ID:DUE_MS``: the store's unique key makes
one run per due time whichever replica starts it, however often. See docs/workflows.md,
"Schedules".

Time comes from ``clock`` (unix ms): the real one, or a test clock that tests move on by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from contracts.errors import AccordError, NotFoundError, UnreachableError
from contracts.schedules import due_after, due_between
from coordinator.engine import authz
from coordinator.engine.engine import Engine, Registry
from coordinator.principal import Principal
from coordinator.store.base import Store
from coordinator.store.records import RUN_PENDING, RUN_RUNNING, AuditRecord, ScheduleRecord

logger = logging.getLogger(__name__)

# A due time is on time (catch_up: none starts it) when it is looked at within this of it.
ON_TIME_MS = 60_000
# How soon a schedule with due times queued behind a running run looks again.
QUEUE_RECHECK_MS = 1_000


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def schedule_key(schedule_id: str, due_ms: int) -> str:
    """The idempotency key of the run of a schedule's due time."""
    return f"schedule:{schedule_id}:{due_ms}"


class Scheduler:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        registry: Registry,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        poll_s: float = 1.0,
        claim_ms: int = 60_000,
        batch: int = 32,
    ) -> None:
        self._store = store
        self._engine = engine
        self._registry = registry
        self._clock = clock
        self._poll_s = poll_s
        self._claim_ms = claim_ms
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    # ---------- the loop ----------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="schedules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except UnreachableError as exc:
                logger.debug("the scheduler cannot reach the store: %s", exc)
            except Exception:
                logger.exception("the scheduler failed; trying again in %.1fs", self._poll_s)
            await asyncio.sleep(self._poll_s)

    async def tick(self) -> int:
        """Fire every schedule due now; how many were fired."""
        fired = 0
        while True:
            now = self._clock()
            claimed = await self._store.claim_schedules(now, self._batch, self._claim_ms)
            for record in claimed:
                await self._fire(record, now)
            fired += len(claimed)
            if len(claimed) < self._batch:
                return fired

    # ---------- keeping the rows in step with the workflows ----------

    async def sync_workflow(self, name: str) -> None:
        """Make the stored schedules those of ``name``'s newest version (none when it has none)."""
        record = await self._registry.newest_workflow(name)
        spec = self._registry.workflow_spec(record) if record is not None else None
        now = self._clock()
        records = []
        for schedule in spec.schedules if spec is not None else ():
            records.append(
                ScheduleRecord(
                    workflow=name,
                    schedule_id=schedule.id,
                    spec=schedule.to_json(),
                    next_due_ms=due_after(schedule.cron, schedule.timezone, now),
                    last_due_ms=now,
                )
            )
        await self._store.sync_schedules(name, records)

    async def sync_all(self) -> None:
        names = sorted({w.name for w in await self._store.list_workflows()})
        for name in names:
            try:
                await self.sync_workflow(name)
            except AccordError as exc:
                logger.warning("the schedules of workflow %s could not be read: %s", name, exc)

    # ---------- firing ----------

    async def _fire(self, record: ScheduleRecord, now: int) -> None:
        claim = record.claimed_until_ms
        spec = record.spec
        cron, zone = str(spec["cron"]), str(spec.get("timezone", "UTC"))
        limit = int(spec.get("max_catch_up", 10))
        missed = due_between(cron, zone, record.last_due_ms, now, max(limit, 1))
        policy = spec.get("catch_up", "none")
        if policy == "all":
            due = missed[-limit:]
        elif policy == "last":
            due = missed[-1:]
        else:
            due = [d for d in missed[-1:] if now - d <= ON_TIME_MS]
        for skipped in (d for d in missed if d not in due):
            logger.info(
                "schedule %s of %s: due time %d missed (catch_up: %s)",
                record.schedule_id,
                record.workflow,
                skipped,
                policy,
            )
        candidates = sorted(set(record.queued) | set(due))
        overlap = spec.get("overlap", "skip")
        queued: list[int] = []
        if candidates and overlap != "allow" and await self._running(record):
            if overlap == "queue":
                queued = candidates[-limit:]
            else:
                logger.info(
                    "schedule %s of %s: due time(s) %s skipped, its last run %s is still going (overlap: skip)",
                    record.schedule_id,
                    record.workflow,
                    candidates,
                    record.last_run_id,
                )
            candidates = []
        elif overlap != "allow" and len(candidates) > 1:
            # One at a time: the rest wait (queue) or go (skip: they would overlap the first).
            candidates, rest = candidates[:1], candidates[1:]
            queued = rest[-limit:] if overlap == "queue" else []
        for due_ms in candidates:
            run_id = await self._start(record, due_ms)
            if run_id:
                record.last_run_id = run_id
        if missed:
            record.last_due_ms = missed[-1]
        record.queued = queued
        record.next_due_ms = due_after(cron, zone, max(now, record.last_due_ms))
        if queued:
            record.next_due_ms = min(record.next_due_ms, now + QUEUE_RECHECK_MS)
        if not await self._store.finish_schedule(record, claim):
            logger.info("schedule %s of %s changed while it fired", record.schedule_id, record.workflow)

    async def _running(self, record: ScheduleRecord) -> bool:
        """Whether the schedule's last run is still going."""
        if not record.last_run_id:
            return False
        run = await self._store.get_run(record.last_run_id)
        return run is not None and run.status in (RUN_PENDING, RUN_RUNNING)

    async def _start(self, record: ScheduleRecord, due_ms: int, key: str = "") -> str:
        """Start the run of a due time (``key``: its idempotency key); its id, "" when it could
        not start (logged: the due time is not tried again)."""
        try:
            return await self._start_or_raise(record, due_ms, key)
        except AccordError as exc:
            logger.warning(
                "schedule %s of %s could not start its run due at %d: %s",
                record.schedule_id,
                record.workflow,
                due_ms,
                exc,
            )
            return ""

    async def _start_or_raise(self, record: ScheduleRecord, due_ms: int, key: str = "") -> str:
        """``_start``, raising why a run could not start (a disabled workflow, say)."""
        team = record.workflow.split("/", 1)[0]
        view, created = await self._engine.start_run(
            Principal(team=team),
            record.workflow,
            record.spec.get("input", {}),
            idempotency_key=key or schedule_key(record.schedule_id, due_ms),
        )
        if created:
            logger.info(
                "schedule %s of %s started run %s", record.schedule_id, record.workflow, view.run.run_id
            )
        return view.run.run_id

    # ---------- what callers ask ----------

    async def list(self, principal: Principal, workflow: str = "") -> list[ScheduleRecord]:
        records = await self._store.list_schedules(workflow)
        return [r for r in records if principal.admin or r.workflow.split("/", 1)[0] == principal.team]

    async def _own(self, principal: Principal, workflow: str, schedule_id: str, verb: str) -> ScheduleRecord:
        found = [r for r in await self._store.list_schedules(workflow) if r.schedule_id == schedule_id]
        if not found:
            raise NotFoundError(f"workflow {workflow} has no schedule {schedule_id}")
        authz.may_schedule(principal, workflow, verb)
        return found[0]

    async def set_paused(
        self, principal: Principal, workflow: str, schedule_id: str, paused: bool
    ) -> ScheduleRecord:
        """Pause or resume; a resumed schedule catches up on what it missed as its catch_up says."""
        verb = "pause" if paused else "resume"
        await self._own(principal, workflow, schedule_id, verb)
        record = await self._store.set_schedule_paused(workflow, schedule_id, paused)
        if record is None:
            raise NotFoundError(f"workflow {workflow} has no schedule {schedule_id}")
        await self._audit(principal, f"schedule.{verb}", workflow, schedule_id, {})
        return record

    async def trigger(self, principal: Principal, workflow: str, schedule_id: str, request_id: str) -> str:
        """Start a run of the schedule now, outside its due times (its input, its workflow); the
        id of the run."""
        record = await self._own(principal, workflow, schedule_id, "trigger")
        now = self._clock()
        key = f"schedule:{schedule_id}:trigger:{request_id or now}"
        # Why it could not start is the caller's to see (a disabled workflow: FAILED_PRECONDITION,
        # exit 2, naming 'accord workflow enable'), not only the coordinator's log.
        run_id = await self._start_or_raise(record, now, key)
        await self._audit(principal, "schedule.trigger", workflow, schedule_id, {"run_id": run_id})
        return run_id

    async def _audit(
        self, principal: Principal, action: str, workflow: str, schedule_id: str, details: dict[str, Any]
    ) -> None:
        team = workflow.split("/", 1)[0]
        await self._store.add_audit(
            AuditRecord(
                at_ms=wall_clock_ms(),
                actor=principal.actor,
                action=action,
                object=f"{workflow}#{schedule_id}",
                owner_team=team,
                platform_intervention=principal.intervenes_on(team),
                details=details,
            )
        )


__all__ = ["Scheduler", "schedule_key"]
