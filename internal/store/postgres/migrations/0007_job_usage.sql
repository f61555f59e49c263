-- What each job used of its instance (right-sizing): CPU in cores from
-- cgroup samples, peak memory, and the flavor it ran on.
CREATE TABLE job_usage (
	job_id           bigint           PRIMARY KEY,
	tenant_id        text             NOT NULL,
	pool_id          text             NOT NULL,
	repo             text             NOT NULL,
	job_name         text             NOT NULL,
	flavor_cpu       integer          NOT NULL,
	flavor_memory_mb integer          NOT NULL,
	peak_cpu         double precision NOT NULL,
	p95_cpu          double precision NOT NULL,
	peak_memory      bigint           NOT NULL,
	cpu_seconds      double precision NOT NULL,
	duration_ms      bigint           NOT NULL,
	samples          integer          NOT NULL,
	recorded_at      timestamptz      NOT NULL
);
CREATE INDEX job_usage_by_name ON job_usage (tenant_id, repo, job_name);
