-- Accord coordinator schema, version 3: everything that decides what happens next is in the store.
--
-- runs.version: compare-and-swap. A transition writes a run only while its stored version is still
-- the one it read (Store.apply), so a stale writer is refused by the database, not by a lock in
-- memory. Rows stored before start at 1. The table is rebuilt rather than altered, as in 0002, so
-- that data_json stays its last column for tools that read rows positionally (benchmarks/).
CREATE TABLE runs_v3 (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    team TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    caller_team TEXT NOT NULL,
    involved TEXT NOT NULL,   -- ",team1,team2," for LIKE filtering
    sampled INTEGER NOT NULL DEFAULT 1,
    version INTEGER NOT NULL DEFAULT 1,
    data_json TEXT NOT NULL   -- the whole record but its version
);
INSERT INTO runs_v3 (run_id, workflow, workflow_version, team, status, created_ms, finished_ms,
                     idempotency_key, caller_team, involved, sampled, version, data_json)
    SELECT run_id, workflow, workflow_version, team, status, created_ms, finished_ms,
           idempotency_key, caller_team, involved, sampled, 1, data_json
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_created ON runs (created_ms);

-- The idempotency key of a run start is a unique constraint (it was a plain index, checked under
-- a lock in one process's memory; runs_idem went with the old table). A duplicate the old engine
-- might have let through leaves the key with the oldest run only: the later ones lose it (column
-- and record alike), so the unique index can be built and find_run answers as it did before.
UPDATE runs
SET idempotency_key = '',
    data_json = json_set(data_json, '$.idempotency_key', '')
WHERE idempotency_key != ''
  AND EXISTS (
      SELECT 1 FROM runs AS older
      WHERE older.workflow = runs.workflow
        AND older.caller_team = runs.caller_team
        AND older.idempotency_key = runs.idempotency_key
        AND (older.created_ms < runs.created_ms
             OR (older.created_ms = runs.created_ms AND older.run_id < runs.run_id))
  );
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, caller_team, idempotency_key)
    WHERE idempotency_key != '';

-- Durable timers, one per (kind, key) (coordinator.store.records.TIMER_*). A processor claims due
-- ones (claimed_until_ms: 0 = unclaimed; a claim that ran out is free again) and fires each in the
-- transition that deletes it.
CREATE TABLE timers (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
);
CREATE INDEX timers_due ON timers (due_ms);

-- Tasks offered to the agents serving (contract, major): scheduled attempts nobody claimed yet.
CREATE TABLE offers (
    attempt_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    contract TEXT NOT NULL,
    major INTEGER NOT NULL,
    offered_ms INTEGER NOT NULL
);
CREATE INDEX offers_queue ON offers (contract, major, offered_ms);

-- Backfill. The engine before this version kept its timers and task queues in memory and rebuilt
-- them from the records when it started; here they are rebuilt once, the same way, from the
-- records of the runs that are still going.
CREATE TEMP TABLE live_attempts AS
    SELECT a.attempt_id,
           a.run_id,
           a.step_id,
           json_extract(a.data_json, '$.status') AS status,
           json_extract(a.data_json, '$.contract') AS contract,
           json_extract(a.data_json, '$.major') AS major,
           json_extract(a.data_json, '$.scheduled_ms') AS scheduled_ms,
           json_extract(a.data_json, '$.started_ms') AS started_ms,
           json_extract(a.data_json, '$.schedule_deadline_ms') AS schedule_deadline_ms,
           json_extract(a.data_json, '$.close_deadline_ms') AS close_deadline_ms
    FROM attempts AS a JOIN runs AS r ON r.run_id = a.run_id
    WHERE r.status IN ('pending', 'running')
      AND json_extract(a.data_json, '$.status') IN ('scheduled', 'running');

-- A scheduled attempt: offered since it was scheduled, and timed out if no agent takes it in time.
INSERT INTO offers (attempt_id, run_id, contract, major, offered_ms)
    SELECT attempt_id, run_id, contract, major, scheduled_ms
    FROM live_attempts WHERE status = 'scheduled';
INSERT INTO timers (kind, key, run_id, due_ms)
    SELECT 'schedule_to_start', attempt_id, run_id, schedule_deadline_ms
    FROM live_attempts WHERE status = 'scheduled' AND schedule_deadline_ms > 0;

-- A running attempt: timed out at its close deadline; and, when its step has a heartbeat timeout,
-- a lease due at its start. That is already past on purpose: the old engine gave every running
-- attempt a fresh heartbeat period when it started, and the engine does the same for a lease due
-- no later than the attempt's own start, so agents that survived the restart keep their tasks.
-- (A step without a heartbeat timeout has no lease, as the old engine gave it none.)
INSERT INTO timers (kind, key, run_id, due_ms)
    SELECT 'start_to_close', attempt_id, run_id, close_deadline_ms
    FROM live_attempts WHERE status = 'running' AND close_deadline_ms > 0;
INSERT INTO timers (kind, key, run_id, due_ms)
    SELECT 'lease', a.attempt_id, a.run_id, a.started_ms
    FROM live_attempts AS a JOIN steps AS s ON s.run_id = a.run_id AND s.step_id = a.step_id
    WHERE a.status = 'running' AND json_extract(s.data_json, '$.policy.timeouts.heartbeat') > 0;

-- A step waiting out its retry backoff (scheduled, with no live attempt): its next attempt.
INSERT INTO timers (kind, key, run_id, due_ms)
    SELECT 'retry', s.run_id || '/' || s.step_id, s.run_id, json_extract(s.data_json, '$.next_attempt_ms')
    FROM steps AS s JOIN runs AS r ON r.run_id = s.run_id
    WHERE r.status IN ('pending', 'running')
      AND json_extract(s.data_json, '$.status') = 'scheduled'
      AND json_extract(s.data_json, '$.next_attempt_ms') > 0
      AND NOT EXISTS (
          SELECT 1 FROM live_attempts AS a WHERE a.run_id = s.run_id AND a.step_id = s.step_id
      );

DROP TABLE live_attempts;
