-- Claims: the scheduler commits an instance `queued` with everything a worker needs to run it (its
-- job); a worker claims it under a lease that it renews while the try runs, and reports the try's
-- end; the scheduler judges the report. Pools and max_active_tasks are counted from these columns
-- at claim time, across every worker.
ALTER TABLE task_instances ADD COLUMN queued_at TIMESTAMPTZ;
ALTER TABLE task_instances ADD COLUMN plugin_id TEXT;
ALTER TABLE task_instances ADD COLUMN pool TEXT;
ALTER TABLE task_instances ADD COLUMN pool_slots BIGINT;
ALTER TABLE task_instances ADD COLUMN priority BIGINT NOT NULL DEFAULT 1;
ALTER TABLE task_instances ADD COLUMN max_active_tasks BIGINT;
ALTER TABLE task_instances ADD COLUMN job JSONB;
ALTER TABLE task_instances ADD COLUMN lease_owner TEXT;
ALTER TABLE task_instances ADD COLUMN lease_expires_at TIMESTAMPTZ;
-- Set when the running try's end is reported, until the scheduler judges it.
ALTER TABLE task_instances ADD COLUMN reported_at TIMESTAMPTZ;
CREATE INDEX task_instances_queued ON task_instances (priority DESC, queued_at) WHERE state = 'queued';
CREATE INDEX task_instances_running ON task_instances (lease_expires_at) WHERE state = 'running';
CREATE INDEX task_instances_reported ON task_instances (run_id) WHERE reported_at IS NOT NULL;

-- Which worker ran a try, and the plugin's result (on success) until the scheduler judges it.
ALTER TABLE task_tries ADD COLUMN worker TEXT;
ALTER TABLE task_tries ADD COLUMN result JSONB;

-- Tries running when this database was last used, before leases: expired at once, so the next
-- scheduler records them as interrupted (a mapped task's parent is `running` without a try).
UPDATE task_instances ti SET lease_owner = '(before leases)', lease_expires_at = updated_at, pool = 'default_pool', pool_slots = 1
WHERE state = 'running' AND NOT EXISTS (
    SELECT 1 FROM task_instances c WHERE c.run_id = ti.run_id AND c.task_id = ti.task_id AND c.map_index >= 0);
-- Instances queued or scheduled before claims carry no job: the scheduler decides them again.
UPDATE task_instances SET state = 'none' WHERE state IN ('queued', 'scheduled');

-- Live workers say so with every lease renewal.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    concurrency   BIGINT NOT NULL,
    pools         JSONB NOT NULL,     -- list of pool names, empty for all
    started_at    TIMESTAMPTZ NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL
);
