-- Accord coordinator schema: retention, and less stored per run (docs/production.md, "Retention").
--
-- Terminal runs older than --retention are deleted in small batches with their steps, attempts,
-- timers, offers and spans (found by the run's trace id); events, request records and the audit
-- log go by age.
--
-- A request record (an answer replayed to a retried request) says when it was written. Those
-- written before this version count from now: nothing is deleted sooner than it would have been.
ALTER TABLE requests ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
UPDATE requests SET created_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
CREATE INDEX requests_created ON requests (created_ms);

-- The oldest finished runs first; the predicate is the one the deletes use (RUN_TERMINAL).
CREATE INDEX runs_finished ON runs (finished_ms) WHERE status IN ('cancelled', 'failed', 'succeeded');
CREATE INDEX events_published ON events (published_ms);
-- A run's spans are found by its trace id (the primary key's first column), so this index, written
-- with every span, is not needed.
DROP INDEX spans_run;

-- Retry and timeout policies, once each: a step names its policy (policy_ref, a hash of it)
-- instead of holding a copy (coordinator/store/codec.py). Steps written before keep their copy in
-- data_json and policy_ref ''. Never deleted: there are as many as distinct policies.
CREATE TABLE policies (
    key TEXT PRIMARY KEY,
    policy_json TEXT NOT NULL
) WITHOUT ROWID;
ALTER TABLE steps ADD COLUMN policy_ref TEXT NOT NULL DEFAULT '';

-- The retention that applies when --retention is not given. A database in use before this version
-- keeps everything, as it did (start-up says so), until --retention is given; a new one keeps 30
-- days. "In use": the admin token's hash, written at the first start, is in settings.
INSERT OR IGNORE INTO settings (key, value)
    SELECT 'retention.default', CASE WHEN EXISTS (SELECT 1 FROM settings) THEN 'off' ELSE '30d' END;
