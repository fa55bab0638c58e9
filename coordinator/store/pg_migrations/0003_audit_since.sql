-- Accord coordinator schema, version 4: reading the audit log by time (`accord audit --since 7d`,
-- the UI's audit page). at_ms is when the change was made; entries are still listed by id (the
-- order they were written). (audit_actor exists since version 1.)
CREATE INDEX audit_at ON audit (at_ms);
