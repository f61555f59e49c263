package component

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// A check answers one question of /readyz. Critical checks decide the
// status code (a replica that cannot record webhooks must not get them);
// the others are reported for operators.
type check struct {
	name     string
	critical bool
	fn       func(ctx context.Context) (detail string, err error)
}

// AddCheck registers a readiness check. fn returns a short detail (shown
// when it passes) or an error (shown, and for a critical check, fails
// readiness).
func (m *Manager) AddCheck(name string, critical bool, fn func(ctx context.Context) (string, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checks = append(m.checks, check{name, critical, fn})
}

// CheckResult is one check's answer.
type CheckResult struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Critical bool   `json:"critical"`
	Detail   string `json:"detail,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Readiness is the answer of /readyz.
type Readiness struct {
	Ready      bool          `json:"ready"`
	Checks     []CheckResult `json:"checks"`
	Components []Status      `json:"components"`
}

// Ready runs every check (concurrently, each bounded by timeout) and
// reports the components; ready is false if a critical check fails or a
// component is degraded (failed within the last minute).
func (m *Manager) Ready(ctx context.Context, timeout time.Duration) Readiness {
	m.mu.Lock()
	checks := append([]check(nil), m.checks...)
	m.mu.Unlock()
	res := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			detail, err := c.fn(cctx)
			r := CheckResult{Name: c.name, OK: err == nil, Critical: c.critical, Detail: detail}
			if err != nil {
				r.Error = err.Error()
			}
			res[i] = r
		}()
	}
	wg.Wait()
	sort.SliceStable(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	out := Readiness{Ready: true, Checks: res, Components: m.Statuses()}
	for _, r := range res {
		if r.Critical && !r.OK {
			out.Ready = false
		}
	}
	for _, s := range out.Components {
		if s.Degraded {
			out.Ready = false
		}
	}
	return out
}

// ReadyHandler serves /readyz: 200 when ready, 503 otherwise, with the
// checks and components as JSON either way.
func (m *Manager) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := m.Ready(r.Context(), 3*time.Second)
		code := http.StatusOK
		if !rd.Ready {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rd)
	})
}
