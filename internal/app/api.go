package app

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/poller"
)

// The read API: enough to see jobs flow and why one waits. Secrets never
// appear here (corral.Secret marshals as "[redacted]", targets show no
// credentials, tokens no hash). Routes are declared in routes.go; a tenant
// token sees its own tenant's objects only, and another tenant's object
// answers 404 as if it did not exist.

// LeaderView is the leader lease as the API shows it: read from the store
// at each request, so every replica answers the same, with whether the
// replica that answers leads.
type LeaderView struct {
	// Holder is the replica that holds (or last held) the lease; empty
	// when no replica has led yet.
	Holder string `json:"holder"`
	// Term is the lease's fencing token.
	Term int64 `json:"term"`
	// ExpiresAt is the lease's expiry, set on the database server's clock
	// on PostgreSQL; a lease past it may be taken by any replica.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Replica is the name of the replica that answers, and Leading says
	// whether it leads now (by its own view of its term).
	Replica string `json:"replica"`
	Leading bool   `json:"leading"`
	// LeadingTerm is the term this replica leads in (0 when it does not).
	LeadingTerm int64 `json:"leading_term,omitempty"`
}

func (a *App) getLeader(w http.ResponseWriter, r *http.Request) {
	v := LeaderView{Replica: a.opt.Holder, Leading: a.Leading()}
	if !a.opt.NoLeader {
		v.LeadingTerm = a.Lead.Get().Token
	}
	err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		l, err := tx.Lease(r.Context(), LeaseName)
		if errors.Is(err, corral.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v.Holder, v.Term, v.ExpiresAt = l.Holder, l.Token, &l.Expires
		return nil
	})
	if err != nil {
		httperr.Write(w, fmt.Errorf("read the leader lease: %w", err))
		return
	}
	httperr.WriteJSON(w, http.StatusOK, v)
}

// JobView is a job as the API shows it.
type JobView struct {
	ID          int64       `json:"id"`
	Target      string      `json:"target"`
	ForgeJobID  int64       `json:"forge_job_id"`
	Repo        string      `json:"repo,omitempty"`
	Name        string      `json:"name,omitempty"`
	Labels      []string    `json:"labels"`
	State       string      `json:"state"`
	Conclusion  string      `json:"conclusion,omitempty"`
	Pools       []string    `json:"pools,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	Pool        string      `json:"pool,omitempty"`
	Instance    string      `json:"instance,omitempty"`
	Runner      string      `json:"runner,omitempty"`
	QueuedAt    time.Time   `json:"queued_at"`
	StartedAt   *time.Time  `json:"started_at,omitempty"`
	CompletedAt *time.Time  `json:"completed_at,omitempty"`
	Timeline    []EventView `json:"timeline,omitempty"`
}

// EventView is one timeline stamp as the API shows it.
type EventView struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	Instance string    `json:"instance,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

func viewJob(j corral.Job) JobView {
	v := JobView{ID: j.ID, Target: j.TargetID, ForgeJobID: j.ForgeJobID, Repo: j.Repo, Name: j.Name,
		Labels: j.Labels, State: string(j.State), Conclusion: j.Conclusion, Reason: j.Reason,
		Pool: j.PoolID, Instance: j.InstanceID, Runner: j.RunnerName, QueuedAt: j.QueuedAt}
	for _, r := range j.Routes {
		v.Pools = append(v.Pools, r.PoolID)
	}
	if !j.StartedAt.IsZero() {
		v.StartedAt = &j.StartedAt
	}
	if !j.CompletedAt.IsZero() {
		v.CompletedAt = &j.CompletedAt
	}
	return v
}

// jobStates are the values GET /jobs takes for state.
var jobStates = []corral.JobState{corral.JobPending, corral.JobQueued, corral.JobRouted,
	corral.JobUnroutable, corral.JobRunning, corral.JobCompleted}

func joinStates(ss []corral.JobState) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, ", ")
}

func (a *App) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := corral.JobFilter{TargetID: q.Get("target"), PoolID: q.Get("pool"), Repo: q.Get("repository"),
		TenantID: auth.TenantOf(r.Context()), Limit: 500}
	var err error
	bad := func(format string, args ...any) {
		if err == nil {
			err = fmt.Errorf(format+": %w", append(args, corral.ErrBadInput)...)
		}
	}
	if s := q.Get("state"); s != "" {
		st := corral.JobState(s)
		if !slices.Contains(jobStates, st) {
			bad("state=%q: want one of %s", s, joinStates(jobStates))
		}
		f.States = []corral.JobState{st}
	}
	if s := q.Get("after"); s != "" {
		// after is the previous page's next: a job id, never negative.
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil || n < 0 {
			bad("after=%q is not a job id (pass the previous page's next)", s)
		}
		f.AfterID = n
	}
	if s := q.Get("limit"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil || n < 1 || n > 1000 {
			bad("limit=%q: want 1 to 1000", s)
		}
		f.Limit = n
	}
	for _, tb := range []struct {
		key string
		dst *time.Time
	}{{"since", &f.CreatedFrom}, {"until", &f.CreatedBefore}} {
		if s := q.Get(tb.key); s != "" {
			v, perr := time.Parse(time.RFC3339, s)
			if perr != nil {
				bad("%s=%q: want an RFC 3339 time like 2026-12-01T00:00:00Z", tb.key, s)
			}
			*tb.dst = v
		}
	}
	if !f.CreatedFrom.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedBefore.After(f.CreatedFrom) {
		bad("until=%q is not after since=%q (since <= created < until)", q.Get("until"), q.Get("since"))
	}
	if err != nil {
		httperr.Write(w, err)
		return
	}
	var jobs []corral.Job
	err = a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		jobs, err = tx.Jobs(r.Context(), f)
		return err
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	out := make([]JobView, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, viewJob(j))
	}
	body := map[string]any{"jobs": out}
	// A full page may have more after it: next is the cursor to pass as
	// after (with the same filters) for the following page.
	if len(jobs) == f.Limit {
		body["next"] = strconv.FormatInt(jobs[len(jobs)-1].ID, 10)
	}
	httperr.WriteJSON(w, http.StatusOK, body)
}

func (a *App) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		httperr.Write(w, fmt.Errorf("job id %q: %w", r.PathValue("id"), corral.ErrBadInput))
		return
	}
	var v JobView
	err = a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		j, err := tx.Job(r.Context(), id)
		if err != nil {
			return err
		}
		if !auth.Visible(r.Context(), j.TenantID) {
			return corral.ErrNotFound
		}
		v = viewJob(j)
		tl, err := tx.Timeline(r.Context(), id)
		for _, e := range tl {
			v.Timeline = append(v.Timeline, EventView{At: e.At, Kind: string(e.Kind), Instance: e.InstanceID, Detail: e.Detail})
		}
		return err
	})
	if errors.Is(err, corral.ErrNotFound) {
		err = fmt.Errorf("job %d: %w", id, corral.ErrNotFound)
	}
	if err != nil {
		httperr.Write(w, err)
		return
	}
	httperr.WriteJSON(w, http.StatusOK, v)
}

// InstanceView is an instance as the API shows it.
type InstanceView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Pool      string    `json:"pool"`
	Target    string    `json:"target"`
	State     string    `json:"state"`
	Labels    []string  `json:"labels"`
	JobID     int64     `json:"job_id,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *App) listInstances(w http.ResponseWriter, r *http.Request) {
	f := corral.InstanceFilter{States: corral.LiveInstanceStates, TenantID: auth.TenantOf(r.Context()), Limit: 1000}
	if s := r.URL.Query().Get("state"); s != "" {
		f.States = []corral.InstanceState{corral.InstanceState(s)}
	}
	var ins []corral.Instance
	err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		ins, err = tx.Instances(r.Context(), f)
		return err
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	out := make([]InstanceView, 0, len(ins))
	for _, in := range ins {
		out = append(out, InstanceView{ID: in.ID, Name: in.Name, Pool: in.PoolID, Target: in.TargetID,
			State: string(in.State), Labels: in.Labels, JobID: in.JobID, Reason: in.Reason,
			LastError: in.LastError, CreatedAt: in.CreatedAt})
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"instances": out})
}

// budgeter is a forge client that knows its remaining API budget (GitHub's
// rate limit): -1 when not known yet.
type budgeter interface {
	Budget() (remaining int, reset time.Time)
}

// TargetView is a target as the API shows it: never its secrets.
type TargetView struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Kind   string `json:"kind"`
	Scope  string `json:"scope"`
	Path   string `json:"path,omitempty"`
	URL    string `json:"url,omitempty"`
	// Mode is webhook, poll or webhook+poll; Poll is the poller's view of
	// a polling target (on the leader; zeros elsewhere).
	Mode string `json:"mode"`
	// Paused: paused through the API (its jobs wait).
	Paused       bool              `json:"paused"`
	RunnerPrefix string            `json:"runner_prefix,omitempty"`
	Settings     map[string]string `json:"settings,omitempty"`
	PollInterval string            `json:"poll_interval,omitempty"`
	// Whether each credential is set; the credentials themselves are
	// write-only and never answered.
	WebhookSecretSet bool           `json:"webhook_secret_set"`
	TokenSet         bool           `json:"token_set"`
	Poll             *poller.Status `json:"poll,omitempty"`
	Budget           *struct {
		Remaining int       `json:"remaining"`
		Reset     time.Time `json:"reset"`
	} `json:"rate_limit,omitempty"`
}

func (a *App) listTargets(w http.ResponseWriter, r *http.Request) {
	targets := a.Catalog.Current().Targets
	var paused map[string]bool
	if err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		paused, err = tx.PausedTargets(r.Context())
		return err
	}); err != nil {
		httperr.Write(w, err)
		return
	}
	polled := map[string]poller.Status{}
	for _, st := range a.Poller.Statuses() {
		polled[st.Target] = st
	}
	out := make([]TargetView, 0, len(targets))
	for _, t := range targets {
		if !auth.Visible(r.Context(), t.TenantID) {
			continue
		}
		out = append(out, a.targetView(t, polled, paused[t.ID]))
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"targets": out})
}

// targetView shows a target: whether each credential is set, never it.
func (a *App) targetView(t corral.Target, polled map[string]poller.Status, paused bool) TargetView {
	v := TargetView{ID: t.ID, Tenant: t.TenantID, Kind: string(t.Kind), Scope: string(t.Scope), Path: t.Path, URL: t.URL,
		Mode: string(t.Mode), Paused: paused, RunnerPrefix: t.RunnerPrefix, Settings: t.Settings,
		WebhookSecretSet: t.WebhookSecret != "", TokenSet: t.Token != ""}
	if t.PollInterval > 0 {
		v.PollInterval = t.PollInterval.String()
	}
	if t.Mode == corral.ModeWebhook {
		v.Mode = "webhook"
	}
	if t.Polls() {
		if st, ok := polled[t.ID]; ok {
			v.Poll = &st
		}
	}
	if f, err := a.opt.Forges.Forge(t); err == nil {
		if b, ok := f.(budgeter); ok {
			if n, reset := b.Budget(); n >= 0 {
				v.Budget = &struct {
					Remaining int       `json:"remaining"`
					Reset     time.Time `json:"reset"`
				}{n, reset}
			}
		}
	}
	return v
}

// TokenView is a token as the API shows it: never its secret or hash.
type TokenView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	Tenant    string     `json:"tenant,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
}

// ViewToken is tk as the API and `corral token list` show it.
func ViewToken(tk corral.Token) TokenView {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return TokenView{ID: tk.ID, Name: tk.Name, Scope: string(tk.Scope), Tenant: tk.TenantID, CreatedAt: tk.CreatedAt,
		ExpiresAt: opt(tk.ExpiresAt), RevokedAt: opt(tk.RevokedAt), LastUsed: opt(tk.LastUsed)}
}

func (a *App) listTokens(w http.ResponseWriter, r *http.Request) {
	var tks []corral.Token
	err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		tks, err = tx.Tokens(r.Context())
		return err
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	out := make([]TokenView, 0, len(tks))
	for _, tk := range tks {
		out = append(out, ViewToken(tk))
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"tokens": out})
}
