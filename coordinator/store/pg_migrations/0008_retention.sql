-- Accord coordinator schema for PostgreSQL: retention, and less stored per run, as the SQLite
-- schema's 0010_retention (docs/production.md, "Retention").
--
-- Terminal runs older than --retention are deleted in small batches with their steps, attempts,
-- timers, offers and spans (found by the run's trace id); events, request records and the audit
-- log go by age.
--
-- A request record says when it was written. Those written before this version count from now.
ALTER TABLE requests ADD COLUMN created_ms bigint NOT NULL DEFAULT 0;
UPDATE requests SET created_ms = (extract(epoch FROM now()) * 1000)::bigint;
CREATE INDEX requests_created ON requests (created_ms);

-- The oldest finished runs first; the predicate is the one the deletes use (RUN_TERMINAL).
CREATE INDEX runs_finished ON runs (finished_ms) WHERE status IN ('cancelled', 'failed', 'succeeded');
-- A run's spans are found by its trace id (the primary key's first column).
DROP INDEX spans_run;

-- Retry and timeout policies, once each: a step names its policy (policy_ref, a hash of it)
-- instead of holding a copy (coordinator/store/codec.py). Never deleted.
CREATE TABLE policies (
    key text COLLATE "C" PRIMARY KEY,
    policy_json text NOT NULL
);
ALTER TABLE steps ADD COLUMN policy_ref text COLLATE "C" NOT NULL DEFAULT '';

-- The retention that applies when --retention is not given. A database in use before this version
-- keeps everything, as it did (start-up says so), until --retention is given; a new one keeps 30
-- days. "In use": the admin token's hash, written at the first start, is in settings.
INSERT INTO settings (key, value)
    SELECT 'retention.default', CASE WHEN EXISTS (SELECT 1 FROM settings) THEN 'off' ELSE '30d' END
    ON CONFLICT (key) DO NOTHING;
