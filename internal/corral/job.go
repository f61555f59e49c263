package corral

import "time"

// JobState is where a job stands in corral's ledger.
//
//	+---------+
//	| pending |  forge: waiting (approval, needs); no runner yet
//	+---------+
//	     |
//	     v
//	+--------+      no pool     +------------+
//	| queued | ---------------> | unroutable |
//	+--------+ <-- re-route --- +------------+
//	     | routed                  |
//	     v                         |
//	+--------+                     |
//	| routed |  demand: waits for a runner
//	+--------+                     |
//	     | in_progress             |
//	     v                         |
//	+---------+                    |
//	| running |                    |
//	+---------+                    |
//	     | completed               |
//	     v                         v
//	+-----------+ <----------------+
//	| completed |  terminal; reachable from every state
//	+-----------+  (out-of-order webhooks, forge sweep)
//
// Events may skip states (a completed webhook before the queued one), so
// every non-terminal state may also jump forward; nothing leaves completed.
type JobState string

// Job states.
const (
	JobPending    JobState = "pending"
	JobQueued     JobState = "queued"
	JobRouted     JobState = "routed"
	JobUnroutable JobState = "unroutable"
	JobRunning    JobState = "running"
	JobCompleted  JobState = "completed"
)

var jobTransitions = map[JobState][]JobState{
	JobPending:    {JobQueued, JobRouted, JobUnroutable, JobRunning, JobCompleted},
	JobQueued:     {JobRouted, JobUnroutable, JobRunning, JobCompleted},
	JobRouted:     {JobQueued, JobUnroutable, JobRunning, JobCompleted},
	JobUnroutable: {JobQueued, JobRouted, JobRunning, JobCompleted},
	JobRunning:    {JobCompleted},
	JobCompleted:  {},
}

// JobStates lists every job state in flow order.
var JobStates = []JobState{JobPending, JobQueued, JobRouted, JobUnroutable, JobRunning, JobCompleted}

// CanJobTransition reports whether a job may go from one state to another.
func CanJobTransition(from, to JobState) bool {
	for _, s := range jobTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Open reports whether the job still needs or holds a runner.
func (s JobState) Open() bool { return s != JobCompleted }

// Route is one pool that accepts a job, with the flavor the job gets there.
type Route struct {
	PoolID string
	Flavor Flavor
}

// Job is a forge workflow job as corral records it, keyed by (TargetID,
// ForgeJobID).
type Job struct {
	ID         int64 // store's id
	TargetID   string
	TenantID   string
	ForgeJobID int64
	RunID      int64
	RunAttempt int
	Repo       string // owner/name
	Name       string
	Labels     []string

	State      JobState
	Conclusion string // success, failure, cancelled, ... once completed

	// Routes are the pools that accept the job, best first. The scheduler
	// serves the job from the first with room.
	Routes []Route
	// Reason says why the job is unroutable or still waiting.
	Reason string

	// PoolID and InstanceID name the instance that runs (or ran) the job.
	PoolID     string
	InstanceID string
	RunnerName string

	CreatedAt   time.Time // first seen by corral
	QueuedAt    time.Time // forge's created_at, else first seen
	StartedAt   time.Time
	CompletedAt time.Time
	UpdatedAt   time.Time
}

// Transition moves the job to state to, or returns a *TransitionError.
// Moving to the current state is a no-op.
func (j *Job) Transition(to JobState) error {
	if j.State == to {
		return nil
	}
	if !CanJobTransition(j.State, to) {
		return &TransitionError{Kind: "job", From: string(j.State), To: string(to)}
	}
	j.State = to
	return nil
}

// EventKind names a step of a job's timeline.
type EventKind string

// Timeline steps.
const (
	EvQueued            EventKind = "queued"
	EvRouted            EventKind = "routed"
	EvUnroutable        EventKind = "unroutable"
	EvInstanceRequested EventKind = "instance_requested"
	EvInstanceCreated   EventKind = "instance_created"
	EvRunnerOnline      EventKind = "runner_online"
	EvJobStarted        EventKind = "job_started"
	EvJobCompleted      EventKind = "job_completed"
	EvInstanceDeleted   EventKind = "instance_deleted"
	EvNote              EventKind = "note" // retries, errors, sweeps
)

// Event is one stamp on a job's timeline.
type Event struct {
	ID         int64
	JobID      int64
	At         time.Time
	Kind       EventKind
	InstanceID string
	Detail     string
}
