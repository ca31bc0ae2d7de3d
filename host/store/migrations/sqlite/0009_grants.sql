-- What tasks may touch (DESIGN.md §9): admin-declared mounts, sealed secrets, the artifacts each
-- successful try left in /out, and what each try was given, for `tasks replay`.
CREATE TABLE mounts (
    name        TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- `sealed` is nonce ‖ XChaCha20-Poly1305 ciphertext ‖ tag, under the server's key (never stored
-- here), with the name as associated data.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE artifacts (
    run_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    map_index   INTEGER NOT NULL,
    try_number  INTEGER NOT NULL,
    name        TEXT NOT NULL,          -- the path under /out, '/'-separated
    size        INTEGER NOT NULL,
    hash        TEXT NOT NULL,          -- sha256:<hex>, the blob's key
    created_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id, map_index, try_number, name)
);
CREATE INDEX artifacts_hash ON artifacts (hash);
CREATE INDEX artifacts_created ON artifacts (created_at);
-- The try's record: context bytes, plugin, limits, seed, clock start, inputs, HTTP exchanges (JSON).
ALTER TABLE task_tries ADD COLUMN record TEXT;
