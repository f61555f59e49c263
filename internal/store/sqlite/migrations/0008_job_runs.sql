-- Completed jobs for CI analytics: names, conclusion and the forge's
-- times (microseconds since the epoch; NULL when unknown); steps as JSON.
CREATE TABLE job_runs (
	job_id       INTEGER PRIMARY KEY,
	tenant_id    TEXT    NOT NULL,
	target_id    TEXT    NOT NULL,
	repo         TEXT    NOT NULL,
	workflow     TEXT    NOT NULL,
	job_name     TEXT    NOT NULL,
	conclusion   TEXT    NOT NULL,
	queued_at    INTEGER,
	started_at   INTEGER,
	completed_at INTEGER NOT NULL,
	steps        TEXT    NOT NULL
) STRICT;
CREATE INDEX job_runs_by_time ON job_runs (tenant_id, completed_at);
CREATE INDEX job_runs_by_completion ON job_runs (completed_at);
