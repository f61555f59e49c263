-- What each job used of its instance (right-sizing): CPU in cores from
-- cgroup samples, peak memory, and the flavor it ran on.
CREATE TABLE job_usage (
	job_id           INTEGER PRIMARY KEY,
	tenant_id        TEXT    NOT NULL,
	pool_id          TEXT    NOT NULL,
	repo             TEXT    NOT NULL,
	job_name         TEXT    NOT NULL,
	flavor_cpu       INTEGER NOT NULL,
	flavor_memory_mb INTEGER NOT NULL,
	peak_cpu         REAL    NOT NULL,
	p95_cpu          REAL    NOT NULL,
	peak_memory      INTEGER NOT NULL,
	cpu_seconds      REAL    NOT NULL,
	duration_ms      INTEGER NOT NULL,
	samples          INTEGER NOT NULL,
	recorded_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX job_usage_by_name ON job_usage (tenant_id, repo, job_name);
