-- Accord coordinator schema: retention (docs/production.md, "Retention"). Terminal runs older than
-- --retention are deleted in small batches with their steps, attempts, request records, spans,
-- timers and offers; events, the audit log and request records of no run by age.
--
-- A request record (an answer replayed to a retried request) says which run it belongs to, so it
-- goes with its run, and when it was written, so one of no run goes by age. Those written before
-- this version count from now: nothing is deleted sooner than it would have been.
ALTER TABLE requests ADD COLUMN run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
UPDATE requests SET created_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
CREATE INDEX requests_run ON requests (run_id) WHERE run_id != '';
CREATE INDEX requests_created ON requests (created_ms) WHERE run_id = '';

-- The oldest finished runs first; the predicate is the one the deletes use (RUN_TERMINAL).
CREATE INDEX runs_finished ON runs (finished_ms) WHERE status IN ('cancelled', 'failed', 'succeeded');
CREATE INDEX events_published ON events (published_ms);
CREATE INDEX timers_run ON timers (run_id);
CREATE INDEX offers_run ON offers (run_id);

-- The retention that applies when --retention is not given. A database in use before this version
-- keeps everything, as it did (start-up says so), until --retention is given; a new one keeps 30
-- days. "In use": the admin token's hash, written at the first start, is in settings.
INSERT OR IGNORE INTO settings (key, value)
    SELECT 'retention.default', CASE WHEN EXISTS (SELECT 1 FROM settings) THEN 'off' ELSE '30d' END;
