-- Accord coordinator schema: workflow schedules (docs/workflows.md, "Schedules").
--
-- One row per schedule of a workflow's newest version: its spec as written (spec_json), whether
-- it is paused, the next due time it fires at (unix ms), and what it did last and has queued
-- (state_json: last_due_ms, last_run_id, queued due times). A coordinator claims a due schedule
-- (claimed_until_ms: 0 = unclaimed; a claim that ran out is free again) and fires it; the run it
-- starts has the due time in its idempotency key, so a due time makes one run whoever fires it.
CREATE TABLE schedules (
    workflow TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    next_due_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    state_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (workflow, schedule_id)
);
CREATE INDEX schedules_due ON schedules (next_due_ms);
