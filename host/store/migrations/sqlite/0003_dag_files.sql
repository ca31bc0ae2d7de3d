-- A DAG whose file is gone (deleted, or now declaring another DAG) is stale: no new scheduled runs,
-- its history kept; loading its file again clears it. NULL: its file is there.
ALTER TABLE dags ADD COLUMN stale_since TEXT;
