-- Users, tokens (only the SHA-256 of each: the token is shown once), fuel budgets, and the audit
-- log of every change and refused attempt.
CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    role           TEXT NOT NULL,            -- viewer | author | operator | admin
    password_hash  TEXT,                     -- argon2 (PHC string); NULL: tokens only
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,            -- tok_ and 12 hex digits: shown, revoked by
    user_name   TEXT NOT NULL REFERENCES users (name),
    hash        TEXT NOT NULL UNIQUE,        -- hex SHA-256 of the secret
    purpose     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
CREATE INDEX tokens_by_user ON tokens (user_name);

CREATE TABLE budgets (
    subject_kind  TEXT NOT NULL,             -- user | role
    subject       TEXT NOT NULL,
    fuel_per_day  INTEGER NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (subject_kind, subject)
);

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,                 -- ok | refused
    address   TEXT NOT NULL,
    detail    TEXT NOT NULL                  -- JSON
);
CREATE INDEX audit_by_actor ON audit (actor, id);

-- A user's fuel of the day: tries ended since midnight, of runs the user triggered.
CREATE INDEX dag_runs_by_trigger ON dag_runs (triggered_by);
CREATE INDEX tries_by_end ON task_tries (ended_at);
