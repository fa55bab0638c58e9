-- Accord coordinator schema, version 5: a team holds several named tokens, each with its own
-- creation, expiry, last use and revocation (docs/production.md, "Tokens"). Only each token's
-- SHA-256 is stored, as before. Times are ms since the epoch; 0 means never (expires_ms,
-- last_used_ms) or not revoked (revoked_ms). A name is unique among a team's live tokens (not
-- revoked, not expired): checked by the store in the transaction that adds one, as "live"
-- depends on the time.
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL DEFAULT 0,
    last_used_ms INTEGER NOT NULL DEFAULT 0,
    revoked_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_team ON tokens (team, name);

-- Each team's one token until now becomes its token named "default".
INSERT INTO tokens (token_hash, team, name, created_ms)
    SELECT token_hash, name, 'default', created_ms FROM teams;

-- teams.token_hash moved into tokens. The table is rebuilt rather than altered (ALTER TABLE
-- ... DROP COLUMN needs SQLite 3.35), as in 0002 and 0003.
CREATE TABLE teams_v5 (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    retry_json TEXT NOT NULL DEFAULT '{}',
    timeouts_json TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO teams_v5 (name, created_ms, retry_json, timeouts_json)
    SELECT name, created_ms, retry_json, timeouts_json FROM teams;
DROP TABLE teams;
ALTER TABLE teams_v5 RENAME TO teams;
