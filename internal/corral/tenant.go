package corral

import "time"

// Tenant owns targets and pools. MaxInstances caps the live instances of all
// its pools together (0 = no cap).
type Tenant struct {
	ID           string
	MaxInstances int
	// FromAPI: added through the API. Applying a config file that does not
	// list it keeps it (a file that lists it takes it over).
	FromAPI bool
}

// TargetKind names a forge family.
type TargetKind string

// Forge families corral knows.
const (
	KindGitHub  TargetKind = "github" // github.com, GHEC, GHES
	KindGitea   TargetKind = "gitea"  // Gitea
	KindForgejo TargetKind = "forgejo"
)

// Scope of a target on its forge. Repository, organization, enterprise, user
// and instance scopes are one generic type: Scope plus Path.
type Scope string

// Scopes.
const (
	ScopeRepo       Scope = "repo"       // Path "owner/name"
	ScopeOrg        Scope = "org"        // Path "org"
	ScopeEnterprise Scope = "enterprise" // Path "slug"
	ScopeUser       Scope = "user"       // Path "" (the token's user)
	ScopeInstance   Scope = "instance"   // Path "" (site admin)
)

// Target is one scope on a forge that owns runners, with the credentials
// corral uses for it and its webhook secret.
type Target struct {
	ID       string // slug, used in the webhook path /webhooks/{ID}
	TenantID string
	Kind     TargetKind
	Scope    Scope
	Path     string
	// URL is the forge's API base URL.
	URL string
	// WebhookSecret verifies webhook signatures. Never logged.
	WebhookSecret Secret
	// Token is the forge credential (a PAT or an App key). Never logged.
	Token Secret
	// RunnerPrefix starts the name of every runner corral registers for
	// this target; the runner sweep only touches names with this prefix.
	RunnerPrefix string
	// Settings carries forge-specific options (runner group id, App id...).
	Settings map[string]string
	// Mode says how corral learns of the target's jobs: by webhook (the
	// default, ""), by polling the forge's API, or both.
	Mode TargetMode
	// PollInterval is the time between two polls in a poll mode (0: the
	// default, DefaultPollInterval).
	PollInterval time.Duration
	// Sealed holds the credentials written through the API, sealed with
	// the secret key (package secretbox): "webhook_secret" and "token" to
	// base64 ciphertext. Only ciphertext reaches the store; each replica
	// opens them with the shared key when it loads the catalog.
	Sealed map[string]string
	// FromAPI: added through the API. Applying a config file that does not
	// list it keeps it (a file that lists it takes it over).
	FromAPI bool
}

// TargetMode says how corral learns of a target's waiting jobs.
type TargetMode string

// Target modes.
const (
	ModeWebhook     TargetMode = ""             // webhooks; the REST sweep as backstop
	ModePoll        TargetMode = "poll"         // no webhook: a leader-only poller lists waiting jobs
	ModeWebhookPoll TargetMode = "webhook+poll" // both: the poller is the backstop
	// ModeScaleSet: no webhook; GitHub's runner scale-set API, a
	// leader-only listener per pool (package listener).
	ModeScaleSet TargetMode = "scaleset"
	// ModeOneJob (Forgejo ≥ 15): no webhook; the poller lists waiting jobs
	// with their per-attempt handles, and each runner is an ephemeral
	// registration started with `one-job --handle`, bound to one job.
	ModeOneJob TargetMode = "one-job"
)

// DefaultPollInterval is the poll interval when the config sets none.
const DefaultPollInterval = 2 * time.Second

// Polls tells whether corral polls the target's forge for waiting jobs.
func (t Target) Polls() bool {
	return t.Mode == ModePoll || t.Mode == ModeWebhookPoll || t.Mode == ModeOneJob
}

// TakesWebhooks tells whether the target's jobs come by webhook.
func (t Target) TakesWebhooks() bool {
	return t.Mode != ModePoll && t.Mode != ModeScaleSet && t.Mode != ModeOneJob
}

// EffectivePollInterval is PollInterval or its default.
func (t Target) EffectivePollInterval() time.Duration {
	if t.PollInterval > 0 {
		return t.PollInterval
	}
	return DefaultPollInterval
}

// Secret is a string that never prints: fmt and slog show "[redacted]".
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return `corral.Secret("[redacted]")` }

// MarshalText hides the value from encoders (JSON logs, API answers).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the value; call it only where the secret is used.
func (s Secret) Reveal() string { return string(s) }
