-- The forge sweep lists the open jobs of one target in id order: this
-- index gives them in that order, without sorting every open job of the
-- target on each pass (the same index as SQLite's migration 0010).
CREATE INDEX jobs_target_open ON jobs (target_id, id) WHERE state <> 'completed';
