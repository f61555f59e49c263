package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/corral-ci/corral/internal/corral"
)

func (t *tx) PutJobRun(ctx context.Context, r corral.JobRun) error {
	steps, err := encodeSteps(r.Steps)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO job_runs (job_id, tenant_id, target_id, repo, workflow, job_name, conclusion,
			queued_at, started_at, completed_at, steps)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET tenant_id = excluded.tenant_id, target_id = excluded.target_id,
			repo = excluded.repo, workflow = excluded.workflow, job_name = excluded.job_name,
			conclusion = excluded.conclusion, queued_at = excluded.queued_at, started_at = excluded.started_at,
			completed_at = excluded.completed_at, steps = excluded.steps`,
		r.JobID, r.TenantID, r.TargetID, r.Repo, r.Workflow, r.JobName, r.Conclusion,
		tv(r.QueuedAt), tv(r.StartedAt), r.CompletedAt.UnixMicro(), steps)
	if err != nil {
		return fmt.Errorf("put run of job %d: %w", r.JobID, err)
	}
	return nil
}

func (t *tx) JobRuns(ctx context.Context, f corral.JobRunFilter) ([]corral.JobRun, error) {
	since, until := int64(math.MinInt64), int64(math.MaxInt64)
	if !f.Since.IsZero() {
		since = f.Since.UnixMicro()
	}
	if !f.Until.IsZero() {
		until = f.Until.UnixMicro()
	}
	out, err := queryAll(ctx, t, func(sc scanner) (corral.JobRun, error) {
		var r corral.JobRun
		var steps string
		if err := sc.Scan(&r.JobID, &r.TenantID, &r.TargetID, &r.Repo, &r.Workflow, &r.JobName, &r.Conclusion,
			micros{&r.QueuedAt}, micros{&r.StartedAt}, micros{&r.CompletedAt}, &steps); err != nil {
			return r, err
		}
		return r, json.Unmarshal([]byte(steps), &r.Steps)
	}, `SELECT job_id, tenant_id, target_id, repo, workflow, job_name, conclusion, queued_at, started_at, completed_at, steps
		FROM job_runs WHERE (? = '' OR tenant_id = ?) AND completed_at >= ? AND completed_at < ?
		ORDER BY completed_at, job_id LIMIT ?`, f.TenantID, f.TenantID, since, until, limit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("list job runs: %w", err)
	}
	return out, nil
}

func encodeSteps(steps []corral.Step) (string, error) {
	if steps == nil {
		steps = []corral.Step{}
	}
	b, err := json.Marshal(steps)
	if err != nil {
		return "", fmt.Errorf("encode steps: %w", err)
	}
	return string(b), nil
}
