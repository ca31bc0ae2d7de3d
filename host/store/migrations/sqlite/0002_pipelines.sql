-- Mapping, sensors, pools, user actions (clear, mark) and scheduler heartbeats.

-- A mapped task instance keeps the element it handles, so a retry or a clear sees the same item.
ALTER TABLE task_instances ADD COLUMN map_item TEXT;
-- Tries before the last clear: a cleared task gets its full retry budget again.
ALTER TABLE task_instances ADD COLUMN tries_before_clear INTEGER NOT NULL DEFAULT 0;

CREATE TABLE pools (
    name         TEXT PRIMARY KEY,
    slots        INTEGER NOT NULL,
    description  TEXT,
    updated_at   TEXT NOT NULL
);
INSERT INTO pools (name, slots, description, updated_at)
VALUES ('default_pool', 128, 'tasks that name no pool', '1970-01-01T00:00:00Z');

-- What users asked for (clear, mark...), who asked and when, and how it went. A running scheduler
-- carries out pending actions (it alone can kill the tries it runs); the table is also the audit log.
CREATE TABLE actions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',   -- pending | done | failed
    result        TEXT,
    done_at       TEXT
);
CREATE INDEX actions_pending ON actions (id) WHERE state = 'pending';

-- Live schedulers say so every second; a command-line tool hands actions to a live one.
CREATE TABLE schedulers (
    id            TEXT PRIMARY KEY,
    pid           INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL
);
