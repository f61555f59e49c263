package corral

import "time"

// JobUsage is what one job used of its instance (right-sizing): CPU in
// cores from cgroup samples, peak memory, and the flavor it ran on.
type JobUsage struct {
	JobID    int64
	TenantID string
	PoolID   string
	Repo     string // owner/name
	JobName  string
	Flavor   Flavor // the flavor it ran on

	PeakCPU         float64 // cores
	P95CPU          float64 // cores
	PeakMemoryBytes int64
	CPUSeconds      float64
	Duration        time.Duration // first sample to last
	Samples         int
	RecordedAt      time.Time
}

// UsageSummary sums up the recorded jobs of one repository, workflow and
// job name (the workflow from the job's CI analytics record, JobRun; ""
// when there is none, as for Gitea):
// the highest peak and p95 CPU, peak memory and duration over them, and
// the largest flavor they ran on.
type UsageSummary struct {
	TenantID        string
	Repo            string
	Workflow        string
	JobName         string
	PoolID          string // a pool that ran it (the greatest id)
	Jobs            int
	PeakCPU         float64
	P95CPU          float64
	PeakMemoryBytes int64
	MaxDuration     time.Duration
	Flavor          Flavor
	LastAt          time.Time
}
