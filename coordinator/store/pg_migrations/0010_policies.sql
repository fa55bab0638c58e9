-- Policies as data (docs/governance.md): one policy file per scope, the platform's ('') and each
-- team's own for its namespace; applying a file replaces its scope's. The file's text is kept
-- whole (its rules are read from it), with who applied it and when.
CREATE TABLE policies (
    scope text COLLATE "C" PRIMARY KEY,
    source_text text NOT NULL,
    source_name text NOT NULL DEFAULT '',
    applied_ms bigint NOT NULL,
    applied_by text NOT NULL DEFAULT ''
);
