package corral

import (
	"context"
	"net/http"
	"time"
)

// JobAction is what a workflow_job event says happened.
type JobAction string

// Job actions, GitHub's words (Gitea uses the same).
const (
	ActionQueued     JobAction = "queued"
	ActionWaiting    JobAction = "waiting"
	ActionInProgress JobAction = "in_progress"
	ActionCompleted  JobAction = "completed"
)

// JobEvent is a forge's news about one job, from a webhook or a sweep.
type JobEvent struct {
	Action     JobAction
	ForgeJobID int64
	RunID      int64
	RunAttempt int
	Repo       string // owner/name
	Name       string
	Labels     []string
	RunnerID   int64  // set from in_progress on
	RunnerName string // set from in_progress on
	Conclusion string // set when completed
	At         time.Time
	// What a completed event carries for CI analytics, when the forge
	// sends it: the workflow's name (GitHub), the forge's created_at,
	// started_at and completed_at, and the steps with their timings.
	Workflow    string
	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	Steps       []Step
}

// Delivery is one verified, decoded webhook delivery.
type Delivery struct {
	ID    string // the forge's delivery id: the dedup key
	Event string // the forge's event name (workflow_job, ping, ...)
	// Job is set for workflow_job deliveries; nil for events corral
	// acknowledges and ignores (ping, workflow_run, ...).
	Job *JobEvent
	// InstallationID and Repo help route a GitHub App's single webhook
	// URL to a target; zero when absent.
	InstallationID int64
	Repo           string
}

// WebhookParser verifies and decodes the webhooks of one forge family. It
// checks the signature over the exact body in constant time before it
// decodes anything. Errors wrap ErrUnauthorized (signature) or ErrBadInput
// (malformed payload).
type WebhookParser interface {
	ParseWebhook(h http.Header, body []byte, secret Secret) (Delivery, error)
}

// RunnerSpec asks a forge for one runner registration.
type RunnerSpec struct {
	Name       string
	Labels     []string
	InstanceID string
	WorkFolder string
	// Pool is the instance's pool (scale-set mode mints through the
	// pool's scale set).
	Pool string
	// ForgeJobID is the forge's id of the job the runner is made for (0:
	// a warm runner for any job). Forges that bind a runner to one job
	// (Forgejo one-job mode) need it.
	ForgeJobID int64
}

// Bootstrap is what an instance needs to start its runner: the command,
// relative to the runner's install directory (the pool's image); the
// environment, where credentials go (never in arguments, which other users
// see); and files to write into the runner's directory before start.
type Bootstrap struct {
	RunnerID int64
	Command  []string
	Env      map[string]Secret
	Files    map[string]Secret
}

// Runner is a runner registration at a forge.
type Runner struct {
	ID     int64
	Name   string
	Online bool
	Busy   bool
	Labels []string
}

// Forge is the client of one target on its forge.
type Forge interface {
	// MintRunner creates a one-time runner credential (GitHub JIT config;
	// Gitea registration token, cached) and returns the bootstrap. One
	// forge API call on the happy path.
	MintRunner(ctx context.Context, spec RunnerSpec) (Bootstrap, error)
	// OpenJobs lists the target's jobs that are queued or running at the
	// forge. Absence here does not prove a job done (listings are paged,
	// shift and may be capped, as GitHub's run search at 1,000): ask Job.
	OpenJobs(ctx context.Context) ([]JobEvent, error)
	// Job returns the forge's current view of one job of the target (repo
	// is the job's owner/name, needed by forges that address jobs per
	// repository). It wraps ErrNotFound when the forge no longer knows the
	// job. The forge sweep asks it before it finishes a job that vanished
	// from the open list: paged listings shift while they are read.
	Job(ctx context.Context, forgeJobID int64, repo string) (JobEvent, error)
	// Runners lists the target's runners whose names start with the
	// target's runner prefix.
	Runners(ctx context.Context) ([]Runner, error)
	// RemoveRunner removes a registration. It returns ErrBusy (wrapped)
	// if the runner runs a job and nil if the runner is already gone.
	RemoveRunner(ctx context.Context, r Runner) error
}

// RunSkimmer is implemented by forges whose job sweep lists jobs run by
// run (GitHub): told the runs the ledger holds open jobs of, it may leave
// the jobs of such a run unlisted between full sweeps (webhooks keep the
// ledger's view of them current), which saves the one call per open run
// per sweep that dominated the sweep's cost in a burst.
type RunSkimmer interface {
	// OpenJobsKnowing is OpenJobs told the runs (by id) the ledger holds
	// open jobs of. skipped holds the runs still open at the forge whose
	// jobs it did not list: their jobs are to be taken as the ledger
	// holds them, not as absent.
	OpenJobsKnowing(ctx context.Context, known map[int64]bool) (open []JobEvent, skipped map[int64]bool, err error)
}

// Forges opens the forge client of a target and the webhook parser of a
// forge family.
type Forges interface {
	Forge(t Target) (Forge, error)
	Parser(k TargetKind) (WebhookParser, error)
}

// RunnerDiagnoser is implemented by forges that recognise, in a runner's
// output, why it could not take jobs (a runner version the forge refuses).
// DiagnoseRunner returns nil when the output shows no such reason.
type RunnerDiagnoser interface {
	DiagnoseRunner(output string) error
}

// JobPoller is implemented by forges whose jobs corral can poll for
// (poll mode): Gitea and Forgejo.
type JobPoller interface {
	// PollJobs lists the target's jobs that wait for a runner (queued)
	// or run (in_progress), with the cheapest call the forge offers.
	// unchanged is true (and jobs nil) when the forge said, through a
	// conditional request, that nothing changed since the previous call.
	PollJobs(ctx context.Context) (jobs []JobEvent, unchanged bool, err error)
}

// CallRecorder observes a forge client's API calls (metrics). Every HTTP
// request sent, retries included, is one call. Implementations must be
// cheap and safe for concurrent use.
type CallRecorder interface {
	// ForgeCall: target made a call of endpoint class endpoint (one of
	// CallEndpoints) that ended with result (one of CallResults).
	ForgeCall(target, endpoint, result string)
}

// Endpoint classes of forge API calls: a fixed list, so that metrics stay
// bounded whatever the forge's URLs hold.
const (
	CallJIT          = "jit"          // GitHub generate-jitconfig
	CallRegistration = "registration" // registration and remove tokens (GitHub fallback, Gitea)
	CallRunners      = "runners"      // list, get, delete runners; runner groups, downloads
	CallJobs         = "jobs"         // workflow runs and jobs
	CallToken        = "token"        // GitHub App: installation tokens and lookups
	CallHooks        = "hooks"        // webhooks and their deliveries
	CallRepos        = "repos"        // repository listings
	CallMeta         = "meta"         // rate_limit, meta, version
	CallOther        = "other"
)

// CallEndpoints lists every endpoint class.
var CallEndpoints = []string{CallJIT, CallRegistration, CallRunners, CallJobs, CallToken, CallHooks, CallRepos, CallMeta, CallOther}

// Results of forge API calls.
const (
	CallOK           = "ok"            // 2xx
	CallNotModified  = "not_modified"  // 304: answered from a cache
	CallClientError  = "client_error"  // other 4xx (not found, refused, ...)
	CallRateLimited  = "rate_limited"  // refused by a rate limit (403/429)
	CallServerError  = "server_error"  // 5xx
	CallNetworkError = "network_error" // no answer
)

// CallResults lists every result.
var CallResults = []string{CallOK, CallNotModified, CallClientError, CallRateLimited, CallServerError, CallNetworkError}

// CallResult classifies an HTTP status (0: no answer).
func CallResult(status int, rateLimited bool) string {
	switch {
	case status == 0:
		return CallNetworkError
	case rateLimited:
		return CallRateLimited
	case status == 304:
		return CallNotModified
	case status >= 500:
		return CallServerError
	case status >= 400:
		return CallClientError
	default:
		return CallOK
	}
}
