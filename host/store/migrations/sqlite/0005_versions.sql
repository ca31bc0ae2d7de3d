-- Versions from bundles and experiments (the HTTP API): who uploaded a version and how; the named
-- experiments a version belongs to; which plugins a version pins (for "which DAG versions use this
-- plugin"); the experiment a run belongs to; indexes for listing runs newest first, page by page.
ALTER TABLE dag_versions ADD COLUMN origin TEXT NOT NULL DEFAULT 'folder';   -- folder | bundle
ALTER TABLE dag_versions ADD COLUMN uploaded_by TEXT;

-- A version may be in several experiments (two engineers pushing the same bytes); an experiment
-- is never scheduled and never becomes the DAG's active version.
CREATE TABLE experiments (
    dag_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    author      TEXT NOT NULL,
    note        TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (dag_id, name, version),
    FOREIGN KEY (dag_id, version) REFERENCES dag_versions (dag_id, version)
);

CREATE TABLE dag_version_plugins (
    dag_id      TEXT NOT NULL,
    version     TEXT NOT NULL,
    plugin_id   TEXT NOT NULL,
    PRIMARY KEY (dag_id, version, plugin_id)
);
CREATE INDEX dag_version_plugins_by_plugin ON dag_version_plugins (plugin_id);
-- Versions recorded before this table: the plugins their files named by path (ids written as
-- `sha256:` in the file are added when the version is next recorded).
INSERT OR IGNORE INTO dag_version_plugins (dag_id, version, plugin_id)
SELECT v.dag_id, v.version, p.value FROM dag_versions v, json_each(v.spec, '$.plugins') p;

ALTER TABLE dag_runs ADD COLUMN experiment TEXT;
CREATE INDEX dag_runs_newest ON dag_runs (created_at DESC, run_id DESC);
CREATE INDEX dag_runs_by_dag_newest ON dag_runs (dag_id, created_at DESC, run_id DESC);
CREATE INDEX dag_runs_by_experiment ON dag_runs (dag_id, experiment) WHERE experiment IS NOT NULL;
