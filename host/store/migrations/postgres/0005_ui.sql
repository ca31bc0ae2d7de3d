-- When each try was queued, so a Gantt chart shows queued and running time per try.
ALTER TABLE task_tries ADD COLUMN queued_at TIMESTAMPTZ;
