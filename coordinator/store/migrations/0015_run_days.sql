-- What the autonomy report keeps of the runs retention deletes: daily aggregates instead of a
-- digest per run, so what is kept for an old period is bounded by days x keys, not by runs
-- (coordinator/store/run_days.py; docs/governance.md, "When retention deletes runs"). Kept as
-- long as the audit log.
--
-- A row: the runs created in one part of a UTC day (since_ms: the day's start, or the latest
-- change their figures depend on) of one workflow version, with the same pinned contract
-- versions, that ended in the same status (successes cut again at the first failure of a part
-- sharing their workflow or a contract: after_failure_ms); how many, and their earliest and latest
-- creation and end times.
CREATE TABLE run_days (
    id INTEGER PRIMARY KEY,
    day_ms INTEGER NOT NULL,
    since_ms INTEGER NOT NULL,
    workflow TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    status TEXT NOT NULL,
    pinned_json TEXT NOT NULL,
    team TEXT NOT NULL,
    after_failure_ms INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL,
    min_created_ms INTEGER NOT NULL,
    max_created_ms INTEGER NOT NULL,
    min_finished_ms INTEGER NOT NULL,
    max_finished_ms INTEGER NOT NULL,
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
-- deleted with it (unless the admin started it: a platform intervention, kept as long as the
-- audit log). The starts of runs retention deleted before this version go now.
DELETE FROM audit
    WHERE action IN ('run.start', 'run.retry') AND platform_intervention = 0
    AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.run_id = audit.object);
