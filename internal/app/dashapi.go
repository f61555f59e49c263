package app

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/webhook"
)

// The read endpoints the dashboard (package dashboard, /ui/) needs beyond
// the jobs, instances and targets of api.go: an overview, the pools with
// their live capacity, usage per hour and the recent webhook deliveries
// (routes.go lists them). Each reads the live catalog and the store; each
// shows a request only what its token's tenant may see (scope).

// tenantScope says which tenants a request may see: every one when all.
type tenantScope struct {
	all    bool
	tenant string
}

func (s tenantScope) allows(tenant string) bool { return s.all || s.tenant == tenant }

// scope is the request's tenant scope: its token's tenant, or every
// tenant for an admin token.
func (a *App) scope(r *http.Request) tenantScope {
	t := auth.TenantOf(r.Context())
	return tenantScope{all: t == "", tenant: t}
}

// PoolView is a pool with its operational state and live capacity.
type PoolView struct {
	ID           string         `json:"id"`
	Tenant       string         `json:"tenant"`
	State        string         `json:"state"` // active, paused or draining (pool_states)
	Provider     string         `json:"provider"`
	Labels       []string       `json:"labels"`
	Targets      []string       `json:"targets,omitempty"`
	Flavor       string         `json:"flavor"`
	CPU          int            `json:"cpu"`
	MemoryMB     int            `json:"memory_mb"`
	MaxFlavor    string         `json:"max_flavor,omitempty"`
	Priority     int            `json:"priority"`
	MinIdle      int            `json:"min_idle"`
	MaxInstances int            `json:"max_instances"` // 0: no cap
	Live         int            `json:"live"`
	ByState      map[string]int `json:"by_state"`
	Waiting      int            `json:"waiting"` // routed jobs whose first choice is this pool, not yet running
	Backoff      *BackoffView   `json:"backoff,omitempty"`
	Price        float64        `json:"price_per_minute,omitempty"`
}

// BackoffView is a pool resting after failures.
type BackoffView struct {
	Kind      string    `json:"kind"`
	Failures  int       `json:"failures"`
	Until     time.Time `json:"until"`
	LastError string    `json:"last_error,omitempty"`
}

func flavorString(f corral.Flavor) string {
	if f == (corral.Flavor{}) {
		return ""
	}
	return fmt.Sprintf("%d cpu, %d MiB, %d MiB disk, %s", f.CPU, f.MemoryMB, f.DiskMB, f.Arch)
}

// livePools reads the pools of the catalog the scope allows, with their
// live instances counted by state and the jobs waiting for them, and the
// open jobs (for the overview's counts).
func (a *App) livePools(ctx context.Context, sc tenantScope) ([]PoolView, []corral.Job, error) {
	var ins []corral.Instance
	var open []corral.Job
	var backoffs []corral.Backoff
	var states map[string]corral.PoolState
	err := a.opt.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		if states, err = tx.PoolStates(ctx); err != nil {
			return err
		}
		if ins, err = tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates}); err != nil {
			return err
		}
		if open, err = tx.Jobs(ctx, corral.JobFilter{States: openStates()}); err != nil {
			return err
		}
		backoffs, err = tx.Backoffs(ctx)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	open = slices.DeleteFunc(open, func(j corral.Job) bool { return !sc.allows(j.TenantID) })
	out := []PoolView{}
	index := map[string]int{}
	for _, p := range a.Catalog.Current().Pools {
		if !sc.allows(p.TenantID) {
			continue
		}
		index[p.ID] = len(out)
		st := states[p.ID]
		if st == "" {
			st = corral.PoolActive
		}
		out = append(out, PoolView{ID: p.ID, Tenant: p.TenantID, State: string(st), Provider: p.Provider, Labels: p.Labels, Targets: p.Targets,
			Flavor: flavorString(p.Flavor), CPU: p.Flavor.CPU, MemoryMB: p.Flavor.MemoryMB, MaxFlavor: flavorString(p.Max),
			Priority: p.Priority, MinIdle: p.MinIdle, MaxInstances: p.MaxInstances, ByState: map[string]int{}, Price: p.PricePerMinute})
	}
	for _, in := range ins {
		if i, ok := index[in.PoolID]; ok {
			out[i].Live++
			out[i].ByState[string(in.State)]++
		}
	}
	for _, j := range open {
		if j.State == corral.JobRouted && len(j.Routes) > 0 {
			if i, ok := index[j.Routes[0].PoolID]; ok {
				out[i].Waiting++
			}
		}
	}
	for _, b := range backoffs {
		if i, ok := index[b.PoolID]; ok && b.Until.After(a.opt.Clock.Now()) {
			out[i].Backoff = &BackoffView{Kind: b.Kind, Failures: b.Failures, Until: b.Until, LastError: b.LastError}
		}
	}
	return out, open, nil
}

func openStates() []corral.JobState {
	var out []corral.JobState
	for _, s := range corral.JobStates {
		if s.Open() {
			out = append(out, s)
		}
	}
	return out
}

func (a *App) listPools(w http.ResponseWriter, r *http.Request) {
	pools, _, err := a.livePools(r.Context(), a.scope(r))
	if err != nil {
		httperr.Write(w, err)
		return
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"pools": pools})
}

// Overview is the dashboard's first page: open jobs by state, capacity per
// pool, provider health and who leads.
type Overview struct {
	At        time.Time      `json:"at"`
	Jobs      map[string]int `json:"jobs"` // open jobs by state (every open state present)
	Pools     []PoolView     `json:"pools"`
	Providers []HealthView   `json:"providers"`
	Ready     bool           `json:"ready"` // /readyz's verdict
	Leader    LeaderSummary  `json:"leader"`
	Catalog   int64          `json:"catalog_version"`
}

// HealthView is one provider's health as /readyz reports it.
type HealthView struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// LeaderSummary says, in the overview, who leads the scheduler and reconciler.
type LeaderSummary struct {
	Replica string    `json:"replica"` // this replica's holder name
	Leading bool      `json:"leading"` // this replica leads
	Holder  string    `json:"holder,omitempty"`
	Term    int64     `json:"term,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Error   string    `json:"error,omitempty"`
}

func (a *App) overview(w http.ResponseWriter, r *http.Request) {
	sc := a.scope(r)
	pools, open, err := a.livePools(r.Context(), sc)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	o := Overview{At: a.opt.Clock.Now(), Jobs: map[string]int{}, Pools: pools, Providers: []HealthView{},
		Catalog: a.Catalog.Current().Version}
	for _, s := range openStates() {
		o.Jobs[string(s)] = 0
	}
	for _, j := range open {
		o.Jobs[string(j.State)]++
	}
	rd := a.Components.Ready(r.Context(), 3*time.Second)
	o.Ready = rd.Ready
	// A tenant sees the providers its pools use; an admin sees them all.
	used := map[string]bool{}
	for _, p := range pools {
		used[p.Provider] = true
	}
	for _, c := range rd.Checks {
		name, ok := strings.CutPrefix(c.Name, "provider ")
		if ok && (sc.all || used[name]) {
			o.Providers = append(o.Providers, HealthView{Name: name, OK: c.OK, Detail: c.Detail, Error: c.Error})
		}
	}
	l := a.Lead.Get()
	o.Leader = LeaderSummary{Replica: a.opt.Holder, Leading: a.Leading(), Holder: l.Holder, Term: l.Token, Expires: l.Expires}
	if a.opt.NoLeader {
		o.Leader.Holder = "(no lease: every replica schedules)"
	}
	if l.Err != nil {
		o.Leader.Error = l.Err.Error()
	}
	httperr.WriteJSON(w, http.StatusOK, o)
}

// UsageHour is one hour of usage: jobs that completed in it, those that
// did not succeed, and the runner minutes they took (started to
// completed, counted in the hour the job completed).
type UsageHour struct {
	Hour          time.Time `json:"hour"`
	Finished      int       `json:"finished"`
	Failed        int       `json:"failed"`
	RunnerMinutes float64   `json:"runner_minutes"`
}

// maxUsageHours bounds the window of /api/v1/usage/hourly (a week).
const maxUsageHours = 168

func (a *App) usageHourly(w http.ResponseWriter, r *http.Request) {
	hours := 24
	if s := r.URL.Query().Get("hours"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxUsageHours {
			httperr.Write(w, fmt.Errorf("hours=%q: want a whole number from 1 to %d: %w", s, maxUsageHours, corral.ErrBadInput))
			return
		}
		hours = n
	}
	sc := a.scope(r)
	end := a.opt.Clock.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-time.Duration(hours) * time.Hour)
	out := make([]UsageHour, hours)
	for i := range out {
		out[i].Hour = start.Add(time.Duration(i) * time.Hour)
	}
	// The store keeps no per-hour rollup: completed jobs are read in id
	// order, a page at a time, and bucketed here.
	var after int64
	for {
		var page []corral.Job
		err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
			var err error
			page, err = tx.Jobs(r.Context(), corral.JobFilter{States: []corral.JobState{corral.JobCompleted}, AfterID: after, Limit: 1000})
			return err
		})
		if err != nil {
			httperr.Write(w, err)
			return
		}
		for _, j := range page {
			if !sc.allows(j.TenantID) || j.CompletedAt.Before(start) || !j.CompletedAt.Before(end) {
				continue
			}
			u := &out[int(j.CompletedAt.Sub(start)/time.Hour)]
			u.Finished++
			if j.Conclusion != "success" {
				u.Failed++
			}
			if !j.StartedAt.IsZero() && j.CompletedAt.After(j.StartedAt) {
				u.RunnerMinutes += j.CompletedAt.Sub(j.StartedAt).Minutes()
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"hours": out})
}

// DeliveryView is one recent webhook delivery.
type DeliveryView struct {
	webhook.Seen
	TookMS float64 `json:"took_ms"`
}

func (a *App) listDeliveries(w http.ResponseWriter, r *http.Request) {
	sc := a.scope(r)
	tenantOf := map[string]string{}
	for _, t := range a.Catalog.Current().Targets {
		tenantOf[t.ID] = t.TenantID
	}
	out := []DeliveryView{}
	for _, s := range a.Webhooks.Recent() {
		target := s.Target
		if s.Routed != "" {
			target = s.Routed
		}
		// A delivery to no known target belongs to no tenant: only a
		// scope over every tenant sees it.
		if t, known := tenantOf[target]; sc.all || (known && sc.allows(t)) {
			out = append(out, DeliveryView{Seen: s, TookMS: float64(s.Took.Microseconds()) / 1000})
		}
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"deliveries": out, "replica": a.opt.Holder})
}
