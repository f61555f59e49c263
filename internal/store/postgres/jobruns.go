package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/corral-ci/corral/internal/corral"
)

func (t *tx) PutJobRun(ctx context.Context, r corral.JobRun) error {
	steps := r.Steps
	if steps == nil {
		steps = []corral.Step{}
	}
	b, err := json.Marshal(steps)
	if err != nil {
		return fmt.Errorf("put run of job %d: encode steps: %w", r.JobID, err)
	}
	_, err = t.exec(ctx, `INSERT INTO job_runs (job_id, tenant_id, target_id, repo, workflow, job_name, conclusion,
			queued_at, started_at, completed_at, steps)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (job_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, target_id = EXCLUDED.target_id,
			repo = EXCLUDED.repo, workflow = EXCLUDED.workflow, job_name = EXCLUDED.job_name,
			conclusion = EXCLUDED.conclusion, queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at,
			completed_at = EXCLUDED.completed_at, steps = EXCLUDED.steps`,
		r.JobID, r.TenantID, r.TargetID, r.Repo, r.Workflow, r.JobName, r.Conclusion,
		tv(r.QueuedAt), tv(r.StartedAt), tv(r.CompletedAt), string(b))
	if err != nil {
		return fmt.Errorf("put run of job %d: %w", r.JobID, err)
	}
	return nil
}

func (t *tx) JobRuns(ctx context.Context, f corral.JobRunFilter) ([]corral.JobRun, error) {
	var lim any
	if f.Limit > 0 {
		lim = f.Limit
	}
	out, err := queryAll(ctx, t, func(r pgx.Rows) (corral.JobRun, error) {
		var jr corral.JobRun
		var steps string
		if err := r.Scan(&jr.JobID, &jr.TenantID, &jr.TargetID, &jr.Repo, &jr.Workflow, &jr.JobName, &jr.Conclusion,
			ts{&jr.QueuedAt}, ts{&jr.StartedAt}, ts{&jr.CompletedAt}, &steps); err != nil {
			return jr, err
		}
		return jr, json.Unmarshal([]byte(steps), &jr.Steps)
	}, `SELECT job_id, tenant_id, target_id, repo, workflow, job_name, conclusion, queued_at, started_at, completed_at, steps
		FROM job_runs WHERE ($1 = '' OR tenant_id = $1)
			AND ($2::timestamptz IS NULL OR completed_at >= $2) AND ($3::timestamptz IS NULL OR completed_at < $3)
		ORDER BY completed_at, job_id LIMIT $4`, f.TenantID, tv(f.Since), tv(f.Until), lim)
	if err != nil {
		return nil, fmt.Errorf("list job runs: %w", err)
	}
	return out, nil
}
