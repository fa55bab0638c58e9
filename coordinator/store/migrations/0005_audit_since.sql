-- Accord coordinator schema, version 6: reading the audit log by time (`accord audit --since 7d`,
-- the UI's audit page) and by the team that acted. at_ms is when the change was made; entries
-- are still listed by id (the order they were written).
CREATE INDEX audit_at ON audit (at_ms);
CREATE INDEX audit_actor ON audit (actor, id);
