-- What a running try last said of its progress (plugin ABI v2's host.progress): a fraction from 0
-- to 1 and a message, written with its live log.
ALTER TABLE task_tries ADD COLUMN progress REAL;
ALTER TABLE task_tries ADD COLUMN progress_message TEXT;
