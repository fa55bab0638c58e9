-- Policy files (docs/governance.md; not the retry and timeout policies of steps): one per scope, the platform's ('') and each
-- team's own for its namespace; applying a file replaces its scope's. The file's text is kept
-- whole (its rules are read from it), with who applied it and when.
CREATE TABLE policy_files (
    scope TEXT PRIMARY KEY,
    source_text TEXT NOT NULL,
    source_name TEXT NOT NULL DEFAULT '',
    applied_ms INTEGER NOT NULL,
    applied_by TEXT NOT NULL DEFAULT ''
);

-- The autonomy report reads the run history (docs/governance.md, "The autonomy report"). When
-- retention deletes a finished run, its digest -- what ran, pinning what, how and when it ended,
-- no payloads -- is written here in the same transaction, and kept as long as the audit log.
CREATE TABLE run_digests (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    team TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    pinned_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX run_digests_created ON run_digests (created_ms);
CREATE INDEX run_digests_finished ON run_digests (finished_ms);
