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
