-- What the autonomy report keeps of the runs retention deletes: daily aggregates instead of a
-- digest per run, as the SQLite schema's 0015_run_days (coordinator/store/run_days.py;
-- docs/governance.md, "When retention deletes runs"). Kept as long as the audit log.
CREATE TABLE run_days (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    day_ms bigint NOT NULL,
    since_ms bigint NOT NULL,
    workflow text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    status text NOT NULL,
    pinned_json text COLLATE "C" NOT NULL,
    team text NOT NULL,
    after_failure_ms bigint NOT NULL DEFAULT 0,
    runs bigint NOT NULL,
    min_created_ms bigint NOT NULL,
    max_created_ms bigint NOT NULL,
    min_finished_ms bigint NOT NULL,
    max_finished_ms bigint NOT NULL,
    UNIQUE (since_ms, workflow, workflow_version, status, pinned_json, after_failure_ms)
);
CREATE INDEX run_days_created ON run_days (max_created_ms);
CREATE INDEX run_days_finished ON run_days (max_finished_ms);
CREATE INDEX run_days_failed ON run_days (min_finished_ms) WHERE status = 'failed';

-- The digests written before: folded by whole days (parts of a day are cut only from now on).
INSERT INTO run_days (day_ms, since_ms, workflow, workflow_version, status, pinned_json, team, runs,
                      min_created_ms, max_created_ms, min_finished_ms, max_finished_ms)
    SELECT (created_ms / 86400000) * 86400000, (created_ms / 86400000) * 86400000, workflow,
           workflow_version, status, pinned_json, min(team), count(*), min(created_ms), max(created_ms),
           min(finished_ms), max(finished_ms)
    FROM run_digests
    GROUP BY created_ms / 86400000, workflow, workflow_version, status, pinned_json;
DROP TABLE run_digests;

-- A run's start (run.start, run.retry) is in the audit log while the run is stored, and is
-- deleted with it (unless the admin started it). The starts of runs deleted before go now.
DELETE FROM audit
    WHERE action IN ('run.start', 'run.retry') AND NOT platform_intervention
    AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.run_id = audit.object COLLATE "C");
