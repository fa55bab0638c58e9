-- Contract and workflow lifecycle (docs/contracts.md, "Retiring a version"; docs/workflows.md,
-- "Versions and commands"): a retired contract version is kept (runs that pinned it still read
-- it) but no longer resolves for a new run; a disabled workflow starts no run. Times are ms
-- since the epoch; 0 means not retired / not disabled.
ALTER TABLE contracts ADD COLUMN retired_ms bigint NOT NULL DEFAULT 0;

CREATE TABLE workflow_states (
    name text COLLATE "C" PRIMARY KEY,
    disabled_ms bigint NOT NULL DEFAULT 0,
    disabled_by text NOT NULL DEFAULT ''
);

-- Overrides (action 'run.override') are read by team and time: the autonomy report counts them.
CREATE INDEX audit_action ON audit (action, at_ms);

-- Which runs use a workflow version: deleting a version needs none to; consumer checks consider
-- the versions unfinished runs use.
CREATE INDEX runs_workflow_version ON runs (workflow, workflow_version);
