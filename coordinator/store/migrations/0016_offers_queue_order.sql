-- The queue index in the order polls read it (offered_ms, then attempt_id), as on PostgreSQL:
-- a poll's "oldest few of this queue" stops after those rows instead of sorting every offer of
-- the same millisecond (SqliteStore.offers).
DROP INDEX offers_queue;
CREATE INDEX offers_queue ON offers (contract, major, offered_ms, attempt_id);
