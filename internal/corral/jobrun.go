package corral

import "time"

// JobRun is one completed job as CI analytics keeps it, from the forge's
// completed event: its names, conclusion and the forge's own times.
type JobRun struct {
	JobID      int64 // the store's job id
	TenantID   string
	TargetID   string
	Repo       string // owner/name
	Workflow   string // GitHub workflow_name; "" when the forge sends none (Gitea)
	JobName    string
	Conclusion string
	// QueuedAt, StartedAt and CompletedAt are the forge's created_at,
	// started_at and completed_at when it sent them, else corral's own
	// stamps of the job (zero when neither is known).
	QueuedAt    time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	Steps       []Step // as the forge sent them; none when it sent none
}

// Duration is the job's run time (started to completed), or -1 when
// either end is unknown.
func (r JobRun) Duration() time.Duration { return span(r.StartedAt, r.CompletedAt) }

// QueueTime is the job's wait (queued to started), or -1 when either end
// is unknown.
func (r JobRun) QueueTime() time.Duration { return span(r.QueuedAt, r.StartedAt) }

// MaxSteps bounds the steps kept of one job (GitHub allows 1,000).
const MaxSteps = 1000

// Step is one step of a job as the forge reports it.
type Step struct {
	Number      int       `json:"number"`
	Name        string    `json:"name"`
	Conclusion  string    `json:"conclusion,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
}

// Duration is the step's run time, or -1 when either end is unknown.
func (s Step) Duration() time.Duration { return span(s.StartedAt, s.CompletedAt) }

func span(from, to time.Time) time.Duration {
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return -1
	}
	return to.Sub(from)
}

// JobRunFilter selects job runs by tenant ("" all) and by completion time
// in [Since, Until) (zero: unbounded); Limit caps the rows (0: no cap).
type JobRunFilter struct {
	TenantID string
	Since    time.Time
	Until    time.Time
	Limit    int
}
