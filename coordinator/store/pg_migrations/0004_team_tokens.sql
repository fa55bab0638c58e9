-- Accord coordinator schema for PostgreSQL, version 3: a team holds several named tokens, each
-- with its own creation, expiry, last use and revocation (docs/production.md, "Tokens"); the
-- same table and columns as the SQLite schema at its version 5. Only each token's SHA-256 is
-- stored, as before. Times are ms since the epoch; 0 means never (expires_ms, last_used_ms) or
-- not revoked (revoked_ms). A name is unique among a team's live tokens (not revoked, not
-- expired): checked by the store in the transaction that adds one, under a lock on the team's
-- row, as "live" depends on the time.
CREATE TABLE tokens (
    token_hash text COLLATE "C" PRIMARY KEY,
    team text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    created_ms bigint NOT NULL,
    expires_ms bigint NOT NULL DEFAULT 0,
    last_used_ms bigint NOT NULL DEFAULT 0,
    revoked_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX tokens_team ON tokens (team, name);

-- Each team's one token until now becomes its token named "default".
INSERT INTO tokens (token_hash, team, name, created_ms)
    SELECT token_hash, name, 'default', created_ms FROM teams;

ALTER TABLE teams DROP COLUMN token_hash;
