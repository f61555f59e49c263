package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/auth"

	"github.com/corral-ci/corral/internal/corral"
)

// idleInstance adds an idle warm instance to pool linux (tenant default)
// and returns its id.
func (f *fixture) idleInstance() string {
	n := f.delivery.Add(1)
	now := time.Now()
	in := corral.Instance{ID: fmt.Sprint("i-idle-", n), Name: fmt.Sprint("corral-linux-idle-", n), PoolID: "linux", TenantID: "default",
		TargetID: "acme", State: corral.InstIdle, Labels: []string{"corral"}, CreatedAt: now, UpdatedAt: now}
	if err := f.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutInstance(context.Background(), &in) }); err != nil {
		panic(err)
	}
	return in.ID
}

// call sends method url as the named caller of the fixture.
func (f *fixture) call(t *testing.T, method, url, who string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, url, nil)
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+f.tok[who])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (f *fixture) instance(t *testing.T, id string) corral.Instance {
	t.Helper()
	var in corral.Instance
	if err := f.st.View(context.Background(), func(tx corral.ReadTx) error {
		var err error
		in, err = tx.Instance(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return in
}

func poolStates(t *testing.T, f *fixture, who string) map[string]string {
	t.Helper()
	code, out := f.call(t, "GET", "/api/v1/pools", who)
	var body struct{ Pools []app.PoolView }
	if err := json.Unmarshal([]byte(out), &body); err != nil || code != 200 {
		t.Fatalf("pools: %d %s %v", code, out, err)
	}
	m := map[string]string{}
	for _, p := range body.Pools {
		m[p.ID] = p.State
	}
	return m
}

// TestApp_PoolOps: drain, pause and resume are recorded in the store (and
// shown by GET /api/v1/pools), tenant-scoped, and refused to readers.
func TestApp_PoolOps(t *testing.T) {
	f := newFixture(t)
	if got := fmt.Sprint(poolStates(t, f, "admin")); got != "map[beta-linux:active linux:active]" {
		t.Fatalf("pools at start: %s", got)
	}
	for _, tc := range []struct {
		who, url string
		code     int
		want     string // the pools as the admin then sees them
	}{
		{"tenant-admin", "/api/v1/pools/linux/drain", 200, "map[beta-linux:active linux:draining]"},
		{"other-tenant-admin", "/api/v1/pools/linux/resume", 404, "map[beta-linux:active linux:draining]"},
		{"tenant-read", "/api/v1/pools/linux/resume", 403, "map[beta-linux:active linux:draining]"},
		{"other-tenant-admin", "/api/v1/pools/beta-linux/pause", 200, "map[beta-linux:paused linux:draining]"},
		{"admin", "/api/v1/pools/linux/pause", 200, "map[beta-linux:paused linux:paused]"},
		{"admin", "/api/v1/pools/nope/pause", 404, "map[beta-linux:paused linux:paused]"},
		{"tenant-admin", "/api/v1/pools/linux/resume", 200, "map[beta-linux:paused linux:active]"},
	} {
		code, out := f.call(t, "POST", tc.url, tc.who)
		if code != tc.code {
			t.Errorf("POST %s as %s: %d %s, want %d", tc.url, tc.who, code, out, tc.code)
		}
		if got := fmt.Sprint(poolStates(t, f, "admin")); got != tc.want {
			t.Errorf("after POST %s as %s: %s, want %s", tc.url, tc.who, got, tc.want)
		}
	}
	if got := fmt.Sprint(poolStates(t, f, "tenant-read")); got != "map[linux:active]" {
		t.Errorf("a tenant sees %s", got)
	}
	// The state is in the store: a second App on the same store (another
	// replica) shows it.
	var states map[string]corral.PoolState
	_ = f.st.View(context.Background(), func(tx corral.ReadTx) error {
		var err error
		states, err = tx.PoolStates(context.Background())
		return err
	})
	if fmt.Sprint(states) != "map[beta-linux:paused]" {
		t.Errorf("store: %v", states)
	}
}

// TestApp_StopInstance: an idle instance is stopped (its registration
// removed, the instance draining); a busy one is refused with 409 unless
// forced; a stopping one is refused; another tenant's does not exist.
func TestApp_StopInstance(t *testing.T) {
	f := newFixture(t)
	idle := f.idleInstance()
	f.forge.Regs[f.instance(t, idle).Name] = &corral.Runner{ID: 7, Name: f.instance(t, idle).Name}
	if code, out := f.call(t, "POST", "/api/v1/instances/"+idle+"/stop", "other-tenant-admin"); code != 404 {
		t.Errorf("other tenant: %d %s", code, out)
	}
	if code, out := f.call(t, "POST", "/api/v1/instances/"+idle+"/stop", "tenant-admin"); code != 200 {
		t.Fatalf("stop idle: %d %s", code, out)
	}
	in := f.instance(t, idle)
	if in.State != corral.InstDraining || in.Reason != "stopped through the API" || f.forge.Regs[in.Name] != nil {
		t.Errorf("stopped instance %s (%s), registration %v", in.State, in.Reason, f.forge.Regs[in.Name])
	}
	if code, out := f.call(t, "POST", "/api/v1/instances/"+idle+"/stop", "tenant-admin"); code != 409 || !strings.Contains(out, "already draining") {
		t.Errorf("stop again: %d %s", code, out)
	}

	busy := f.idleInstance()
	_ = f.st.Update(context.Background(), func(tx corral.Tx) error {
		in, _ := tx.Instance(context.Background(), busy)
		in.State, in.JobID = corral.InstBusy, f.jobA
		return tx.PutInstance(context.Background(), &in)
	})
	code, out := f.call(t, "POST", "/api/v1/instances/"+busy+"/stop", "admin")
	if code != 409 || !strings.Contains(out, "its runner is busy") {
		t.Errorf("stop busy: %d %s, want 409", code, out)
	}
	if st := f.instance(t, busy).State; st != corral.InstBusy {
		t.Errorf("a refused stop changed the instance to %s", st)
	}
	if code, out := f.call(t, "POST", "/api/v1/instances/"+busy+"/stop?force=maybe", "admin"); code != 400 || !strings.Contains(out, `force=\"maybe\"`) {
		t.Errorf("force=maybe: %d %s", code, out)
	}
	if code, out := f.call(t, "POST", "/api/v1/instances/"+busy+"/stop?force=true", "admin"); code != 200 {
		t.Errorf("forced stop: %d %s", code, out)
	}
	if st := f.instance(t, busy).State; st != corral.InstDraining {
		t.Errorf("forced stop left the instance %s", st)
	}
	if code, out := f.call(t, "POST", "/api/v1/instances/nope/stop", "admin"); code != 404 {
		t.Errorf("unknown instance: %d %s", code, out)
	}
}

// TestApp_RetryJob: an unroutable job is routed again with the router in
// force; one still without a pool stays unroutable with its reason; a job
// in another state is refused with 409.
func TestApp_RetryJob(t *testing.T) {
	f := newFixture(t)
	put := func(labels ...string) int64 {
		j := corral.Job{TargetID: "acme", TenantID: "default", ForgeJobID: f.delivery.Add(1) + 5000, Repo: "acme/app",
			Labels: labels, State: corral.JobUnroutable, Reason: "no pool", CreatedAt: time.Now(), QueuedAt: time.Now(), UpdatedAt: time.Now()}
		if err := f.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutJob(context.Background(), &j) }); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	fixed, still := put("corral"), put("gpu")
	if code, out := f.call(t, "POST", "/api/v1/jobs/"+itoa(fixed)+"/retry", "other-tenant-admin"); code != 404 {
		t.Errorf("other tenant: %d %s", code, out)
	}
	code, out := f.call(t, "POST", "/api/v1/jobs/"+itoa(fixed)+"/retry", "tenant-admin")
	var v app.JobView
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 200 || v.State != "routed" || len(v.Pools) != 1 || v.Pools[0] != "linux" {
		t.Fatalf("retry: %d %s", code, out)
	}
	code, out = f.call(t, "POST", "/api/v1/jobs/"+itoa(still)+"/retry", "admin")
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 200 || v.State != "unroutable" || v.Reason == "" || v.Reason == "no pool" {
		t.Fatalf("retry of a job no pool takes: %d %s", code, out)
	}
	code, out = f.call(t, "POST", "/api/v1/jobs/"+itoa(fixed)+"/retry", "admin")
	if code != 409 || !strings.Contains(out, "is routed, not unroutable") {
		t.Errorf("retry of a routed job: %d %s", code, out)
	}
	if code, out := f.call(t, "POST", "/api/v1/jobs/x/retry", "admin"); code != 400 {
		t.Errorf("bad id: %d %s", code, out)
	}
}

// TestApp_TargetOps: pause and resume are recorded in the store and shown
// by GET /api/v1/targets; another tenant's admin cannot pause the target
// (404, as if absent) nor see it; a reader is refused.
func TestApp_TargetOps(t *testing.T) {
	f := newFixture(t)
	paused := func() map[string]bool {
		t.Helper()
		code, out := f.call(t, "GET", "/api/v1/targets", "admin")
		var body struct{ Targets []app.TargetView }
		if err := json.Unmarshal([]byte(out), &body); err != nil || code != 200 {
			t.Fatalf("targets: %d %s %v", code, out, err)
		}
		m := map[string]bool{}
		for _, v := range body.Targets {
			m[v.ID] = v.Paused
		}
		return m
	}
	if got := paused(); got["acme"] {
		t.Fatalf("at start: %v", got)
	}
	for _, tc := range []struct {
		who, url string
		code     int
		want     bool // acme paused afterwards
	}{
		{"other-tenant-admin", "/api/v1/targets/acme/pause", 404, false},
		{"tenant-read", "/api/v1/targets/acme/pause", 403, false},
		{"tenant-admin", "/api/v1/targets/acme/pause", 200, true},
		{"other-tenant-admin", "/api/v1/targets/acme/resume", 404, true},
		{"admin", "/api/v1/targets/nope/resume", 404, true},
		{"admin", "/api/v1/targets/acme/resume", 200, false},
		{"admin", "/api/v1/targets/acme/pause", 200, true},
	} {
		code, out := f.call(t, "POST", tc.url, tc.who)
		if code != tc.code {
			t.Errorf("POST %s as %s: %d %s, want %d", tc.url, tc.who, code, out, tc.code)
		}
		if got := paused()["acme"]; got != tc.want {
			t.Errorf("after POST %s as %s: paused %v, want %v", tc.url, tc.who, got, tc.want)
		}
	}
	_, out := f.call(t, "GET", "/api/v1/targets", "other-tenant-admin")
	if strings.Contains(out, `"acme"`) {
		t.Errorf("another tenant sees target acme: %s", out)
	}
	var inStore map[string]bool
	_ = f.st.View(context.Background(), func(tx corral.ReadTx) error {
		var err error
		inStore, err = tx.PausedTargets(context.Background())
		return err
	})
	if fmt.Sprint(inStore) != "map[acme:true]" {
		t.Errorf("store: %v", inStore)
	}
}

// spareTarget adds a target of tenant default to the store's catalog and
// returns its id.
func (f *fixture) spareTarget() string {
	id := fmt.Sprint("spare-", f.delivery.Add(1))
	err := f.st.Update(context.Background(), func(tx corral.Tx) error {
		if err := tx.PutTarget(context.Background(), corral.Target{ID: id, TenantID: "default", Kind: corral.KindGitHub}); err != nil {
			return err
		}
		_, err := tx.BumpCatalogVersion(context.Background())
		return err
	})
	if err != nil {
		panic(err)
	}
	return id
}

// spareTenant stores a new tenant without targets or pools and returns its
// id.
func (f *fixture) spareTenant() string {
	id := fmt.Sprint("spare-", f.delivery.Add(1))
	err := f.st.Update(context.Background(), func(tx corral.Tx) error {
		if err := tx.PutTenant(context.Background(), corral.Tenant{ID: id}); err != nil {
			return err
		}
		_, err := tx.BumpCatalogVersion(context.Background())
		return err
	})
	if err != nil {
		panic(err)
	}
	return id
}

// spareToken stores a tenant-read token of tenant default and returns its id.
func (f *fixture) spareToken() string {
	_, tk, err := auth.New(fmt.Sprint("spare-", f.delivery.Add(1)), corral.ScopeTenantRead, "default", 0, time.Now())
	if err == nil {
		err = f.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutToken(context.Background(), tk) })
	}
	if err != nil {
		panic(err)
	}
	return tk.ID
}
