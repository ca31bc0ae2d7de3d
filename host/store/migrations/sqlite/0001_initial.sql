-- Sandflow's embedded store (SQLite). Timestamps are RFC 3339 text in UTC; JSON is text.

-- Plugin bytes by id (sha256: of the bytes): any process fetches exactly the bytes a DAG pins.
CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,
    bytes       BLOB NOT NULL,
    size        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE dags (
    dag_id          TEXT PRIMARY KEY,
    active_version  TEXT NOT NULL,
    file_path       TEXT,
    is_paused       INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Immutable: a version is the hash of its spec, so a row is never updated.
CREATE TABLE dag_versions (
    dag_id      TEXT NOT NULL REFERENCES dags (dag_id),
    version     TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (dag_id, version)
);

-- The last error of each DAG file that failed to load; its DAG keeps its last good version.
CREATE TABLE import_errors (
    file_path   TEXT PRIMARY KEY,
    dag_id      TEXT,
    message     TEXT NOT NULL,
    at          TEXT NOT NULL
);

CREATE TABLE dag_runs (
    run_id          TEXT PRIMARY KEY,
    dag_id          TEXT NOT NULL REFERENCES dags (dag_id),
    version         TEXT NOT NULL,
    run_type        TEXT NOT NULL,          -- scheduled | manual | backfill
    state           TEXT NOT NULL,          -- queued | running | success | failed
    logical_date    TEXT NOT NULL,
    interval_start  TEXT,
    interval_end    TEXT,
    conf            TEXT NOT NULL,
    note            TEXT,
    triggered_by    TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    FOREIGN KEY (dag_id, version) REFERENCES dag_versions (dag_id, version)
);
CREATE INDEX dag_runs_by_dag ON dag_runs (dag_id, created_at);
CREATE INDEX dag_runs_active ON dag_runs (state) WHERE state IN ('queued', 'running');
-- One scheduled run per interval, whatever happens to the scheduler.
CREATE UNIQUE INDEX dag_runs_one_per_interval ON dag_runs (dag_id, interval_start) WHERE run_type = 'scheduled';

CREATE TABLE task_instances (
    run_id       TEXT NOT NULL REFERENCES dag_runs (run_id),
    task_id      TEXT NOT NULL,
    map_index    INTEGER NOT NULL DEFAULT -1,
    state        TEXT NOT NULL,
    try_number   INTEGER NOT NULL DEFAULT 0,
    next_try_at  TEXT,
    output       TEXT,
    metrics      TEXT,
    reason       TEXT,
    started_at   TEXT,
    ended_at     TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id, map_index)
);

-- One row per try: what ran, how it ended, what it used, and its log.
CREATE TABLE task_tries (
    run_id        TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    map_index     INTEGER NOT NULL DEFAULT -1,
    try_number    INTEGER NOT NULL,
    plugin_id     TEXT NOT NULL,
    outcome       TEXT,                     -- success | exit_code | trap | fuel_exhausted | ... | interrupted
    message       TEXT,
    fuel_used     INTEGER,
    peak_memory   INTEGER,
    wall_us       INTEGER,
    log           TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    PRIMARY KEY (run_id, task_id, map_index, try_number),
    FOREIGN KEY (run_id, task_id, map_index) REFERENCES task_instances (run_id, task_id, map_index)
);
