-- Completed jobs for CI analytics: names, conclusion and the forge's
-- times (NULL when unknown); steps as JSON.
CREATE TABLE job_runs (
	job_id       bigint      PRIMARY KEY,
	tenant_id    text        NOT NULL,
	target_id    text        NOT NULL,
	repo         text        NOT NULL,
	workflow     text        NOT NULL,
	job_name     text        NOT NULL,
	conclusion   text        NOT NULL,
	queued_at    timestamptz,
	started_at   timestamptz,
	completed_at timestamptz NOT NULL,
	steps        text        NOT NULL
);
CREATE INDEX job_runs_by_time ON job_runs (tenant_id, completed_at);
CREATE INDEX job_runs_by_completion ON job_runs (completed_at);
