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

-- Concurrency limits (docs/production.md, "Team limits"). An offer names the team that started its
-- run, so a poll can pass by the offers of a team at its limit; inflight holds the attempts agents
-- run now, with that team, counted against its limit. Attempts running when this migration runs
-- are not in it: they do not count until they end.
ALTER TABLE offers ADD COLUMN caller_team TEXT NOT NULL DEFAULT '';
CREATE TABLE inflight (
    attempt_id TEXT PRIMARY KEY,
    caller_team TEXT NOT NULL,
    contract TEXT NOT NULL
);
CREATE INDEX inflight_team ON inflight (caller_team);
