-- Accord coordinator schema, version 4: the web UI's sign-in sessions, in the store rather than
-- in one process's memory, so a session outlives a coordinator restart and, on PostgreSQL, is
-- served by any coordinator on the database. Nothing here is usable on its own: key is the
-- SHA-256 of the cookie's random id (never the id), sealed_token the signed-in token encrypted
-- under a key derived from that id (coordinator/web/_sessions.py).
CREATE TABLE ui_sessions (
    key TEXT PRIMARY KEY,
    team TEXT NOT NULL,            -- '' for the admin
    admin INTEGER NOT NULL,
    sealed_token BLOB NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
-- The least recently seen go first when there are too many; the idle and too old when pruned.
CREATE INDEX ui_sessions_seen ON ui_sessions (last_seen_ms, created_ms);
CREATE INDEX ui_sessions_created ON ui_sessions (created_ms);
