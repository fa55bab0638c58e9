-- Accord coordinator schema, version 2: a run's sampling decision, made once when it starts
-- (OTEL_TRACES_SAMPLER, or the caller's traceparent flags) and kept with it, so every hop of the
-- run follows the same decision, across coordinator restarts too. Runs stored before were all
-- sampled. The table is rebuilt rather than altered so that data_json stays its last column.
CREATE TABLE runs_v2 (
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
    data_json TEXT NOT NULL   -- the whole record
);
INSERT INTO runs_v2 (run_id, workflow, workflow_version, team, status, created_ms, finished_ms,
                     idempotency_key, caller_team, involved, sampled, data_json)
    SELECT run_id, workflow, workflow_version, team, status, created_ms, finished_ms,
           idempotency_key, caller_team, involved, 1, data_json
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v2 RENAME TO runs;
CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_created ON runs (created_ms);
CREATE INDEX runs_idem ON runs (workflow, caller_team, idempotency_key) WHERE idempotency_key != '';
