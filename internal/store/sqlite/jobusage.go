package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func (t *tx) PutJobUsage(ctx context.Context, u corral.JobUsage) error {
	_, err := t.exec(ctx, `INSERT INTO job_usage (job_id, tenant_id, pool_id, repo, job_name, flavor_cpu, flavor_memory_mb,
			peak_cpu, p95_cpu, peak_memory, cpu_seconds, duration_ms, samples, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET tenant_id = excluded.tenant_id, pool_id = excluded.pool_id, repo = excluded.repo,
			job_name = excluded.job_name, flavor_cpu = excluded.flavor_cpu, flavor_memory_mb = excluded.flavor_memory_mb,
			peak_cpu = excluded.peak_cpu, p95_cpu = excluded.p95_cpu, peak_memory = excluded.peak_memory,
			cpu_seconds = excluded.cpu_seconds, duration_ms = excluded.duration_ms, samples = excluded.samples,
			recorded_at = excluded.recorded_at`,
		u.JobID, u.TenantID, u.PoolID, u.Repo, u.JobName, u.Flavor.CPU, u.Flavor.MemoryMB,
		u.PeakCPU, u.P95CPU, u.PeakMemoryBytes, u.CPUSeconds, u.Duration.Milliseconds(), u.Samples, u.RecordedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("put usage of job %d: %w", u.JobID, err)
	}
	return nil
}

func (t *tx) UsageSummaries(ctx context.Context, tenantID string) ([]corral.UsageSummary, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.UsageSummary, error) {
		var s corral.UsageSummary
		var ms int64
		err := sc.Scan(&s.TenantID, &s.Repo, &s.Workflow, &s.JobName, &s.PoolID, &s.Jobs, &s.PeakCPU, &s.P95CPU, &s.PeakMemoryBytes,
			&ms, &s.Flavor.CPU, &s.Flavor.MemoryMB, micros{&s.LastAt})
		s.MaxDuration = time.Duration(ms) * time.Millisecond
		return s, err
	}, `SELECT u.tenant_id, u.repo, COALESCE(r.workflow, ''), u.job_name, MAX(u.pool_id), COUNT(*), MAX(u.peak_cpu),
			MAX(u.p95_cpu), MAX(u.peak_memory), MAX(u.duration_ms), MAX(u.flavor_cpu), MAX(u.flavor_memory_mb), MAX(u.recorded_at)
		FROM job_usage u LEFT JOIN job_runs r ON r.job_id = u.job_id
		WHERE ? = '' OR u.tenant_id = ?
		GROUP BY u.tenant_id, u.repo, COALESCE(r.workflow, ''), u.job_name
		ORDER BY u.tenant_id, u.repo, COALESCE(r.workflow, ''), u.job_name`, tenantID, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list usage summaries: %w", err)
	}
	return out, nil
}
