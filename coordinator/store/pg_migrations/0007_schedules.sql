-- Accord coordinator schema for PostgreSQL: workflow schedules (docs/workflows.md, "Schedules");
-- the same table and columns as the SQLite schema's 0009_schedules. A coordinator claims a due
-- schedule with FOR UPDATE SKIP LOCKED and a claim time, and the run it starts has the due time
-- in its idempotency key, so a due time makes one run whichever replica fires it.
CREATE TABLE schedules (
    workflow text COLLATE "C" NOT NULL,
    schedule_id text COLLATE "C" NOT NULL,
    spec_json text NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    next_due_ms bigint NOT NULL,
    claimed_until_ms bigint NOT NULL DEFAULT 0,
    state_json text NOT NULL DEFAULT '{}',
    PRIMARY KEY (workflow, schedule_id)
);
CREATE INDEX schedules_due ON schedules (next_due_ms);

-- Concurrency limits (docs/production.md, "Team limits"). An offer names the team that started its
-- run, so a poll can pass by the offers of a team at its limit; inflight holds the attempts agents
-- run now, with that team, counted against its limit. Attempts running when this migration runs
-- are not in it: they do not count until they end.
ALTER TABLE offers ADD COLUMN caller_team text COLLATE "C" NOT NULL DEFAULT '';
CREATE TABLE inflight (
    attempt_id text COLLATE "C" PRIMARY KEY,
    caller_team text COLLATE "C" NOT NULL,
    contract text COLLATE "C" NOT NULL
);
CREATE INDEX inflight_team ON inflight (caller_team);
