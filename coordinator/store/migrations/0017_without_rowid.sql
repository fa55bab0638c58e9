-- The small tables every transition writes, clustered on their primary key (WITHOUT ROWID): a row
-- and its key are one b-tree rather than a table and its key's index, so a transition's commit
-- writes fewer pages to the WAL (a step's three transitions set and clear two timers, an in-flight
-- row and an offer each). Their rows are a few ids and numbers, which is what WITHOUT ROWID suits;
-- the rows are copied as they are.
CREATE TABLE timers_v17 (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
INSERT INTO timers_v17 (kind, key, run_id, due_ms, claimed_until_ms)
    SELECT kind, key, run_id, due_ms, claimed_until_ms FROM timers;
DROP TABLE timers;
ALTER TABLE timers_v17 RENAME TO timers;
CREATE INDEX timers_due ON timers (due_ms);

CREATE TABLE offers_v17 (
    attempt_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    contract TEXT NOT NULL,
    major INTEGER NOT NULL,
    offered_ms INTEGER NOT NULL,
    caller_team TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
INSERT INTO offers_v17 (attempt_id, run_id, contract, major, offered_ms, caller_team)
    SELECT attempt_id, run_id, contract, major, offered_ms, caller_team FROM offers;
DROP TABLE offers;
ALTER TABLE offers_v17 RENAME TO offers;
CREATE INDEX offers_queue ON offers (contract, major, offered_ms, attempt_id);

CREATE TABLE inflight_v17 (
    attempt_id TEXT PRIMARY KEY,
    caller_team TEXT NOT NULL,
    contract TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO inflight_v17 (attempt_id, caller_team, contract)
    SELECT attempt_id, caller_team, contract FROM inflight;
DROP TABLE inflight;
ALTER TABLE inflight_v17 RENAME TO inflight;
CREATE INDEX inflight_team ON inflight (caller_team);
CREATE INDEX inflight_contract ON inflight (contract);

CREATE TABLE requests_v17 (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, request_id)
) WITHOUT ROWID;
INSERT INTO requests_v17 (scope, request_id, answer_json, created_ms)
    SELECT scope, request_id, answer_json, created_ms FROM requests;
DROP TABLE requests;
ALTER TABLE requests_v17 RENAME TO requests;
CREATE INDEX requests_created ON requests (created_ms);
