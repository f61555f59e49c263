-- The forge sweep lists the open jobs of one target, in id order. With
-- only the (target_id, forge_job_id) key, SQLite sorted every open job of
-- the target in a temporary b-tree on each pass: at 100,000 open jobs the
-- sort was the part of the reconcile pass that grew worse than linearly.
CREATE INDEX jobs_target_open ON jobs (target_id, id) WHERE state <> 'completed';
