package corral

import "time"

// InstanceState is where an instance stands.
//
//	+---------+  provider created  +----------+  runner online  +------+
//	| pending | -----------------> | starting | --------------> | idle |
//	+---------+                    +----------+                 +------+
//	     |                              |  took a job               | took a job
//	     |                              +-----------> +------+ <----+
//	     |                                            | busy |
//	     |                                            +------+
//	     |  create failed, timeout, job done, scale-down |
//	     +---------------------> +----------+ <----------+  (also from starting, idle)
//	                             | draining |  runner removed, provider delete
//	                             +----------+
//	                                  |
//	                                  v
//	                             +---------+
//	                             | deleted |  terminal
//	                             +---------+
//
// Every state but deleted counts against the limits: the instance holds (or
// may hold) capacity until the provider confirmed its deletion.
type InstanceState string

// Instance states.
const (
	InstPending  InstanceState = "pending"
	InstStarting InstanceState = "starting"
	InstIdle     InstanceState = "idle"
	InstBusy     InstanceState = "busy"
	InstDraining InstanceState = "draining"
	InstDeleted  InstanceState = "deleted"
)

// InstanceStates lists every instance state in flow order.
var InstanceStates = []InstanceState{InstPending, InstStarting, InstIdle, InstBusy, InstDraining, InstDeleted}

// LiveInstanceStates are the states that count against limits.
var LiveInstanceStates = []InstanceState{InstPending, InstStarting, InstIdle, InstBusy, InstDraining}

var instanceTransitions = map[InstanceState][]InstanceState{
	InstPending:  {InstStarting, InstDraining},
	InstStarting: {InstIdle, InstBusy, InstDraining},
	InstIdle:     {InstBusy, InstDraining},
	InstBusy:     {InstDraining},
	InstDraining: {InstDeleted},
	InstDeleted:  {},
}

// CanInstanceTransition reports whether an instance may go from one state to
// another.
func CanInstanceTransition(from, to InstanceState) bool {
	for _, s := range instanceTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Live reports whether the state counts against limits.
func (s InstanceState) Live() bool { return s != InstDeleted }

// Instance is one process, container or machine that corral created,
// carrying exactly one ephemeral runner.
type Instance struct {
	ID       string // corral's id; also the provider tag
	Name     string // runner name at the forge
	PoolID   string
	TenantID string
	TargetID string
	State    InstanceState
	Labels   []string // the runner's labels
	Flavor   Flavor

	// JobID is the job the instance was created for, or the job it runs
	// once busy; 0 for a warm runner not bound to a job.
	JobID int64

	// Provider names the provider instance that makes and deletes it,
	// recorded when it is reserved ("" in rows older than that record).
	Provider   string
	ProviderID string // the provider's handle, once created
	RunnerID   int64  // the forge's runner id, once known

	Attempts  int    // create attempts
	LastError string // last provider or forge error (no secrets)
	Reason    string // why it is draining

	CreatedAt time.Time // reserved
	StartedAt time.Time // provider created it
	OnlineAt  time.Time
	BusyAt    time.Time
	DrainAt   time.Time
	DeletedAt time.Time
	ExpiresAt time.Time // max lifetime; the instance enforces it itself
	UpdatedAt time.Time
}

// Transition moves the instance to state to, or returns a *TransitionError.
// Moving to the current state is a no-op.
func (in *Instance) Transition(to InstanceState) error {
	if in.State == to {
		return nil
	}
	if !CanInstanceTransition(in.State, to) {
		return &TransitionError{Kind: "instance", From: string(in.State), To: string(to)}
	}
	in.State = to
	return nil
}
