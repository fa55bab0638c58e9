-- Accord coordinator schema for PostgreSQL, version 2: the web UI's sign-in sessions (as the
-- SQLite schema's version 4), so that any coordinator on the database serves a session signed in
-- through another, and a load balancer may send a person's requests to any of them. Nothing here
-- is usable on its own: key is the SHA-256 of the cookie's random id (never the id), sealed_token
-- the signed-in token encrypted under a key derived from that id (coordinator/web/_sessions.py).
CREATE TABLE ui_sessions (
    key text COLLATE "C" PRIMARY KEY,
    team text NOT NULL,            -- '' for the admin
    admin boolean NOT NULL,
    sealed_token bytea NOT NULL,
    csrf text NOT NULL,
    created_ms bigint NOT NULL,
    last_seen_ms bigint NOT NULL
);
-- The least recently seen go first when there are too many; the idle and too old when pruned.
CREATE INDEX ui_sessions_seen ON ui_sessions (last_seen_ms, created_ms);
CREATE INDEX ui_sessions_created ON ui_sessions (created_ms);
