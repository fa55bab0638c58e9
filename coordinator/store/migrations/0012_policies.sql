-- Policies as data (docs/governance.md): one policy file per scope, the platform's ('') and each
-- team's own for its namespace; applying a file replaces its scope's. The file's text is kept
-- whole (its rules are read from it), with who applied it and when.
CREATE TABLE policies (
    scope TEXT PRIMARY KEY,
    source_text TEXT NOT NULL,
    source_name TEXT NOT NULL DEFAULT '',
    applied_ms INTEGER NOT NULL,
    applied_by TEXT NOT NULL DEFAULT ''
);
