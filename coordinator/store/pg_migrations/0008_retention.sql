-- Accord coordinator schema for PostgreSQL: retention, as the SQLite schema's 0010_retention
-- (docs/production.md, "Retention"). Terminal runs older than --retention are deleted in small
-- batches with their steps, attempts, request records, spans, timers and offers; events, the
-- audit log and request records of no run by age.
--
-- A request record says which run it belongs to, so it goes with its run, and when it was written,
-- so one of no run goes by age. Those written before this version count from now.
ALTER TABLE requests ADD COLUMN run_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN created_ms bigint NOT NULL DEFAULT 0;
UPDATE requests SET created_ms = (extract(epoch FROM now()) * 1000)::bigint;
CREATE INDEX requests_run ON requests (run_id) WHERE run_id <> '';
CREATE INDEX requests_created ON requests (created_ms) WHERE run_id = '';

-- The oldest finished runs first; the predicate is the one the deletes use (RUN_TERMINAL).
CREATE INDEX runs_finished ON runs (finished_ms) WHERE status IN ('cancelled', 'failed', 'succeeded');
CREATE INDEX timers_run ON timers (run_id);
CREATE INDEX offers_run ON offers (run_id);

-- The retention that applies when --retention is not given. A database in use before this version
-- keeps everything, as it did (start-up says so), until --retention is given; a new one keeps 30
-- days. "In use": the admin token's hash, written at the first start, is in settings.
INSERT INTO settings (key, value)
    SELECT 'retention.default', CASE WHEN EXISTS (SELECT 1 FROM settings) THEN 'off' ELSE '30d' END
    ON CONFLICT (key) DO NOTHING;
