-- Policy files (docs/governance.md; not the retry and timeout policies of steps): one per scope, the platform's ('') and each
-- team's own for its namespace; applying a file replaces its scope's. The file's text is kept
-- whole (its rules are read from it), with who applied it and when.
CREATE TABLE policy_files (
    scope text COLLATE "C" PRIMARY KEY,
    source_text text NOT NULL,
    source_name text NOT NULL DEFAULT '',
    applied_ms bigint NOT NULL,
    applied_by text NOT NULL DEFAULT ''
);

-- The autonomy report reads the run history (docs/governance.md, "The autonomy report"). When
-- retention deletes a finished run, its digest -- what ran, pinning what, how and when it ended,
-- no payloads -- is written here in the same transaction, and kept as long as the audit log.
CREATE TABLE run_digests (
    run_id text COLLATE "C" PRIMARY KEY,
    workflow text NOT NULL,
    workflow_version integer NOT NULL,
    team text NOT NULL,
    status text NOT NULL,
    created_ms bigint NOT NULL,
    finished_ms bigint NOT NULL,
    pinned_json text NOT NULL DEFAULT '{}'
);
CREATE INDEX run_digests_created ON run_digests (created_ms);
CREATE INDEX run_digests_finished ON run_digests (finished_ms);
