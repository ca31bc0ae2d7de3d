-- Sandflow's store on PostgreSQL: the schema of SQLite's migrations 0001-0003 in one, with native
-- types (TIMESTAMPTZ, JSONB, BYTEA, BIGINT, BOOLEAN) and the same indexes.

-- Plugin bytes by id (sha256: of the bytes): any process on any machine fetches exactly the bytes
-- a DAG pins.
CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,
    bytes       BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    kind        TEXT NOT NULL,                  -- p1_command | p2_command
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE dags (
    dag_id          TEXT PRIMARY KEY,
    active_version  TEXT NOT NULL,
    file_path       TEXT,
    is_paused       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    -- No file declares it any more (deleted, or now declaring another DAG): no new scheduled runs,
    -- its history kept; loading its file again clears it. NULL: its file is there.
    stale_since     TIMESTAMPTZ
);

-- Immutable: a version is the hash of its spec, so a row is never updated.
CREATE TABLE dag_versions (
    dag_id      TEXT NOT NULL REFERENCES dags (dag_id),
    version     TEXT NOT NULL,
    spec        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dag_id, version)
);

-- The last error of each DAG file that failed to load; its DAG keeps its last good version.
CREATE TABLE import_errors (
    file_path   TEXT PRIMARY KEY,
    dag_id      TEXT,
    message     TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);

CREATE TABLE dag_runs (
    run_id          TEXT PRIMARY KEY,
    dag_id          TEXT NOT NULL REFERENCES dags (dag_id),
    version         TEXT NOT NULL,
    run_type        TEXT NOT NULL,          -- scheduled | manual | backfill
    state           TEXT NOT NULL,          -- queued | running | success | failed
    logical_date    TIMESTAMPTZ NOT NULL,
    interval_start  TIMESTAMPTZ,
    interval_end    TIMESTAMPTZ,
    conf            JSONB NOT NULL,
    note            TEXT,
    triggered_by    TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    ended_at        TIMESTAMPTZ,
    FOREIGN KEY (dag_id, version) REFERENCES dag_versions (dag_id, version)
);
CREATE INDEX dag_runs_by_dag ON dag_runs (dag_id, created_at);
CREATE INDEX dag_runs_active ON dag_runs (state) WHERE state IN ('queued', 'running');
-- One scheduled run per interval, whatever the number of schedulers creating them.
CREATE UNIQUE INDEX dag_runs_one_per_interval ON dag_runs (dag_id, interval_start) WHERE run_type = 'scheduled';

CREATE TABLE task_instances (
    run_id              TEXT NOT NULL REFERENCES dag_runs (run_id),
    task_id             TEXT NOT NULL,
    map_index           BIGINT NOT NULL DEFAULT -1,
    state               TEXT NOT NULL,
    try_number          BIGINT NOT NULL DEFAULT 0,
    next_try_at         TIMESTAMPTZ,
    output              JSONB,
    metrics             JSONB,
    reason              TEXT,
    started_at          TIMESTAMPTZ,
    ended_at            TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL,
    -- A mapped task instance keeps the element it handles, so a retry or a clear sees the same item.
    map_item            JSONB,
    -- Tries before the last clear: a cleared task gets its full retry budget again.
    tries_before_clear  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, task_id, map_index)
);

-- One row per try: what ran, how it ended, what it used, and its log.
CREATE TABLE task_tries (
    run_id        TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    map_index     BIGINT NOT NULL DEFAULT -1,
    try_number    BIGINT NOT NULL,
    plugin_id     TEXT NOT NULL,
    outcome       TEXT,                     -- success | exit_code | trap | fuel_exhausted | ... | interrupted
    message       TEXT,
    fuel_used     BIGINT,
    peak_memory   BIGINT,
    wall_us       BIGINT,
    log           TEXT,
    started_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ,
    PRIMARY KEY (run_id, task_id, map_index, try_number),
    FOREIGN KEY (run_id, task_id, map_index) REFERENCES task_instances (run_id, task_id, map_index)
);

CREATE TABLE pools (
    name         TEXT PRIMARY KEY,
    slots        BIGINT NOT NULL,
    description  TEXT,
    updated_at   TIMESTAMPTZ NOT NULL
);
INSERT INTO pools (name, slots, description, updated_at)
VALUES ('default_pool', 128, 'tasks that name no pool', '1970-01-01T00:00:00Z');

-- What users asked for (clear, mark...), who asked and when, and how it went. A scheduler claims
-- and carries out pending actions; the table is also the audit log.
CREATE TABLE actions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       JSONB NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done | failed
    result        TEXT,
    done_at       TIMESTAMPTZ
);
CREATE INDEX actions_pending ON actions (id) WHERE state = 'pending';

-- Live schedulers say so every second; a command-line tool hands actions to a live one.
CREATE TABLE schedulers (
    id            TEXT PRIMARY KEY,
    pid           BIGINT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL
);

-- Who holds the scheduling advisory lock, for the message a refused process shows: the lock
-- decides, this row only names its holder (the server backend holding the lock, and the process
-- and role behind it). Rows of holders gone are ignored and replaced by the next holder.
CREATE TABLE scheduling_owner (
    backend_pid  INTEGER PRIMARY KEY,
    pid          BIGINT NOT NULL,
    role         TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL
);
