package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

func newApp(t *testing.T) *app.App {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}},
		ControllerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

func get(t *testing.T, h http.Handler, url string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	return rec.Code, rec.Body.String()
}

func TestApp_API(t *testing.T) {
	a := newApp(t)
	h := a.Handler()
	body := jobPayload(42, "queued", "")
	req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", "d-1", github.Sign(secret, body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Fatalf("webhook: %d %s", rec.Code, rec.Body)
	}
	code, out := get(t, h, "/api/v1/jobs")
	var list struct {
		Jobs []app.JobView `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 200 || len(list.Jobs) != 1 {
		t.Fatalf("jobs: %d %s %v", code, out, err)
	}
	j := list.Jobs[0]
	if j.ForgeJobID != 42 || j.State != "routed" || len(j.Pools) != 1 || j.Pools[0] != "linux" {
		t.Fatalf("job = %+v", j)
	}
	code, out = get(t, h, "/api/v1/jobs/"+itoa(j.ID))
	if code != 200 || !strings.Contains(out, `"kind":"queued"`) || !strings.Contains(out, `"kind":"routed"`) {
		t.Fatalf("job detail: %d %s", code, out)
	}
	for url, want := range map[string]int{"/api/v1/jobs/999": 404, "/api/v1/jobs/abc": 400, "/api/v1/jobs?after=x": 400,
		"/healthz": 200, "/api/v1/instances": 200, "/api/v1/targets": 200} {
		if code, out := get(t, h, url); code != want {
			t.Errorf("GET %s = %d %s, want %d", url, code, out, want)
		}
	}
	for _, url := range []string{"/api/v1/jobs", "/api/v1/instances", "/api/v1/targets", "/healthz"} {
		if _, out := get(t, h, url); strings.Contains(out, secret.Reveal()) {
			t.Fatalf("%s leaks the webhook secret", url)
		}
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// GET /api/v1/leader: two replicas on one store answer the same holder
// and term, and only the holder says it leads; when it stops (releasing
// the lease) the other takes over in a new term, and both show it.
func TestApp_APILeader(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	replica := func(holder string) (http.Handler, context.CancelFunc, chan error) {
		a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
			Tenants:      []corral.Tenant{{ID: "default"}},
			Targets:      []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
			ControllerID: "test", Holder: holder, LeaseTTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return a.Handler(), cancel, done
	}
	leaderOf := func(h http.Handler) app.LeaderView {
		t.Helper()
		code, out := get(t, h, "/api/v1/leader")
		var v app.LeaderView
		if err := json.Unmarshal([]byte(out), &v); err != nil || code != 200 {
			t.Fatalf("GET /api/v1/leader = %d %s (%v)", code, out, err)
		}
		return v
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	ha, stopA, doneA := replica("a")
	wait("a leads", func() bool { return leaderOf(ha).Leading })
	hb, _, _ := replica("b")
	va, vb := leaderOf(ha), leaderOf(hb)
	if va.Holder != "a" || va.Term < 1 || va.LeadingTerm != va.Term || va.Replica != "a" || va.ExpiresAt == nil || !va.ExpiresAt.After(time.Now()) {
		t.Errorf("a's view = %+v, want a leading in its term, the lease not expired", va)
	}
	if vb.Holder != "a" || vb.Term != va.Term || vb.Leading || vb.LeadingTerm != 0 || vb.Replica != "b" {
		t.Errorf("b's view = %+v, want a's lease in term %d, b not leading", vb, va.Term)
	}
	// The same lead in /metrics and /readyz (b's readyz waits for b's
	// first look at the lease).
	shows(t, ha, "/metrics", "corral_leader 1", fmt.Sprintf("corral_leader_term %d", va.Term))
	shows(t, hb, "/metrics", "corral_leader 0", "corral_leader_term 0")
	shows(t, ha, "/readyz", fmt.Sprintf("this replica leads (term %d)", va.Term))
	wait("b's readyz names a", func() bool { _, out := get(t, hb, "/readyz"); return strings.Contains(out, "a leads (lease until") })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	doneA <- nil // for the cleanup
	wait("b leads", func() bool { return leaderOf(hb).Leading })
	if vb := leaderOf(hb); vb.Holder != "b" || vb.Term <= va.Term || vb.LeadingTerm != vb.Term {
		t.Errorf("after a stopped, b's view = %+v, want b leading in a term above %d", vb, va.Term)
	}
	if va := leaderOf(ha); va.Holder != "b" || va.Leading {
		t.Errorf("the stopped replica a's view = %+v, want b holding the lease, a not leading", va)
	}
	vb = leaderOf(hb)
	shows(t, hb, "/metrics", "corral_leader 1", fmt.Sprintf("corral_leader_term %d", vb.Term))
	shows(t, hb, "/readyz", fmt.Sprintf("this replica leads (term %d)", vb.Term))
	shows(t, ha, "/metrics", "corral_leader 0", "corral_leader_term 0")
}

// shows fails unless GET url answers a body holding every want.
func shows(t *testing.T, h http.Handler, url string, wants ...string) {
	t.Helper()
	_, out := get(t, h, url)
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("GET %s does not show %q:\n%s", url, w, out)
		}
	}
}
